#!/usr/bin/env node
/**
 * Makes the meter-like sample images of examples/meter-reading.json (and the OCR calibration set):
 * a dial with its counter window, digits rendered by sharp (librsvg) in DejaVu Sans Mono. Run once;
 * the PNGs and ground-truth.json are committed so the example and tests do not depend on fonts.
 *   node scripts/make-ocr-samples.js [outDir]
 */
'use strict';
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

const OUT = path.resolve(process.argv[2] || path.join(__dirname, '..', 'models', 'ocr-samples'));

// Each meter: its counter reading and the serial number printed under it (both are read).
const METERS = [
  { file: 'meter-01.png', reading: '004721', serial: 'SN 58213' },
  { file: 'meter-02.png', reading: '019384', serial: 'SN 70416' },
  { file: 'meter-03.png', reading: '250067', serial: 'A1B2 C3' },
  { file: 'meter-04.png', reading: '783159', serial: 'SN 11902' },
  { file: 'meter-05.png', reading: '000512', serial: 'K7X-208' },
  { file: 'meter-06.png', reading: '364810', serial: 'SN 93025' },
];

function meterSvg({ reading, serial }, index) {
  const w = 320;
  const h = 240;
  const hue = [205, 30, 120, 0, 260, 170][index % 6];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
  <defs>
    <radialGradient id="bg" cx="50%" cy="45%" r="75%"><stop offset="0%" stop-color="#f4f4f2"/><stop offset="100%" stop-color="hsl(${hue},12%,62%)"/></radialGradient>
  </defs>
  <rect width="${w}" height="${h}" fill="hsl(${hue},10%,45%)"/>
  <circle cx="160" cy="120" r="114" fill="url(#bg)" stroke="#2b2b2b" stroke-width="6"/>
  <rect x="58" y="70" width="204" height="54" rx="6" fill="#161616"/>
  <text x="160" y="112" text-anchor="middle" font-family="DejaVu Sans Mono" font-weight="bold" font-size="40" fill="#f2f2f2" letter-spacing="2">${reading}</text>
  <text x="160" y="168" text-anchor="middle" font-family="DejaVu Sans Mono" font-size="20" fill="#202020">${serial}</text>
</svg>`;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const truth = {};
  for (const [i, m] of METERS.entries()) {
    await sharp(Buffer.from(meterSvg(m, i))).flatten({ background: '#ffffff' }).png({ compressionLevel: 9 }).toFile(path.join(OUT, m.file));
    truth[m.file] = [m.reading, m.serial];
  }
  fs.writeFileSync(path.join(OUT, 'ground-truth.json'), JSON.stringify(truth, null, 2) + '\n');
  console.log(`wrote ${METERS.length} images and ground-truth.json to ${OUT}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
