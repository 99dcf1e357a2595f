#!/usr/bin/env node
'use strict';
/*
 * Camera-like versions of the digit detector's held-out sample scenes, for the detection example:
 *   models/digit-detector/samples/camera-<k>.jpg   320x240 colour JPEG: the 128x128 scene scaled
 *   to 240x240 and centred on black (the scenes' background), so a letterbox resize to 128x128 gives
 *   the model the scene back and the boxes must come back in 320x240 pixels.
 *   models/digit-detector/samples/camera-ground-truth.json  the scenes' boxes in those pixels.
 * Reads samples/scene-*.png and samples/ground-truth.json written by scripts/train-digit-detector.py.
 *
 * Usage: node scripts/export-detector-samples.js
 */
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

const DIR = path.join(__dirname, '..', 'models', 'digit-detector', 'samples');
const SCENES = 4;
const W = 320;
const H = 240;
const SIDE = 240;
const LEFT = (W - SIDE) / 2;

async function main() {
  const truth = JSON.parse(fs.readFileSync(path.join(DIR, 'ground-truth.json'), 'utf8'));
  const out = [];
  for (let k = 0; k < SCENES; k++) {
    const sample = truth.samples[k];
    const scene = await sharp(path.join(DIR, sample.file)).resize(SIDE, SIDE, { kernel: 'cubic' }).toColourspace('srgb').png().toBuffer();
    const file = `camera-${k}.jpg`;
    await sharp({ create: { width: W, height: H, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .composite([{ input: scene, left: LEFT, top: 0 }])
      .jpeg({ quality: 90 })
      .toFile(path.join(DIR, file));
    const s = SIDE / 128;
    const r = (v) => Math.round(v * 100) / 100;
    out.push({ file, boxes: sample.boxes.map((b) => ({ label: b.label, x: r(LEFT + b.x * s), y: r(b.y * s), w: r(b.w * s), h: r(b.h * s) })) });
  }
  const description = `${W}x${H} JPEGs of held-out scenes (scaled by ${SIDE / 128}, ${LEFT} px of black on each side) with their ground-truth boxes in those pixels.`;
  fs.writeFileSync(path.join(DIR, 'camera-ground-truth.json'), JSON.stringify({ description, samples: out }, null, 1) + '\n');
  console.log(`wrote ${out.length} camera samples to ${DIR}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
