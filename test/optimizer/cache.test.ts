import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { monitorEventLoopDelay } from 'perf_hooks';
import { optimizeCached, optimizeCacheKey, OPTIMIZE_CACHE_ENTRIES } from '../../src/engine/graph/optimizer/cache';
import { readModelInfo } from '../../src/engine/graph/model-info';

const ROOT = path.resolve(__dirname, '../../..');
const MODEL = path.join(ROOT, 'models', 'mnist', 'mnist-cnn.onnx');
const SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');

describe('optimize on load: disk cache', function () {
  this.timeout(120000);
  let dir: string;

  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-optcache-'));
  });
  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('makes the fp16 model once, then serves the same file from the cache', async function () {
    const first = await optimizeCached(MODEL, { precision: 'fp16' }, dir);
    assert.equal(first.cached, false);
    assert.equal(readModelInfo(fs.readFileSync(first.modelPath)).precision, 'fp16');
    assert.ok(first.report.quantized.length > 0);
    const made = fs.statSync(first.modelPath).ino;
    const second = await optimizeCached(MODEL, { precision: 'fp16' }, dir);
    assert.equal(second.cached, true);
    assert.equal(second.modelPath, first.modelPath);
    assert.equal(fs.statSync(second.modelPath).ino, made, 'the cached file is not rewritten');
    assert.deepEqual(second.report, first.report);
    // No temporary files are left behind.
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });

  it('keys by model bytes, options and calibration content', async function () {
    const bytes = new Uint8Array(fs.readFileSync(MODEL));
    const fp16 = await optimizeCacheKey(bytes, { precision: 'fp16' });
    assert.equal(await optimizeCacheKey(bytes, { precision: 'fp16' }), fp16);
    assert.notEqual(await optimizeCacheKey(bytes, { precision: 'fp16', fp16Io: true }), fp16);
    const changed = Uint8Array.from(bytes);
    changed[changed.length - 1] ^= 1;
    assert.notEqual(await optimizeCacheKey(changed, { precision: 'fp16' }), fp16);

    const calib = path.join(dir, 'calib');
    fs.mkdirSync(calib);
    for (const f of fs.readdirSync(SAMPLES).filter((n) => n.endsWith('.png')).slice(0, 4)) fs.copyFileSync(path.join(SAMPLES, f), path.join(calib, f));
    const int8 = await optimizeCacheKey(bytes, { precision: 'int8', calibration: calib });
    assert.equal(await optimizeCacheKey(bytes, { precision: 'int8', calibration: calib }), int8);
    // Same names, other content: another key (a stale calibration must not be reused).
    const first = fs.readdirSync(calib)[0];
    fs.copyFileSync(path.join(SAMPLES, 'large', fs.readdirSync(path.join(SAMPLES, 'large'))[0]), path.join(calib, first));
    assert.notEqual(await optimizeCacheKey(bytes, { precision: 'int8', calibration: calib }), int8);
  });

  it('shares one int8 run between concurrent loads, with the event loop answering meanwhile', async function () {
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const [a, b] = await Promise.all([
      optimizeCached(MODEL, { precision: 'int8', calibration: SAMPLES, calibrationImage: { width: 28, height: 28 } }, dir),
      optimizeCached(MODEL, { precision: 'int8', calibration: SAMPLES, calibrationImage: { width: 28, height: 28 } }, dir),
    ]);
    delay.disable();
    assert.equal(a, b, 'one run, one result object');
    assert.equal(readModelInfo(fs.readFileSync(a.modelPath)).precision, 'int8');
    assert.equal(a.report.calibration?.samples, fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png')).length);
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.onnx')).length, 1);
    // Calibration runs onnxruntime synchronously; on this thread it would block for its whole duration.
    assert.ok(delay.max / 1e6 < 200, `event loop blocked for ${(delay.max / 1e6).toFixed(0)} ms`);
  });

  it('reports the optimizer error (here: INT8 for an NCS2) and caches nothing', async function () {
    await assert.rejects(optimizeCached(MODEL, { precision: 'int8', target: 'ncs2', calibration: SAMPLES }, dir), /FP16 only|fp16/i);
    assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.onnx')) : [], []);
  });

  it(`keeps at most ${OPTIMIZE_CACHE_ENTRIES} models, dropping the least recently used`, async function () {
    const stale = (i: number) => path.join(dir, `old${i}.fp16.${i}.onnx`);
    for (let i = 0; i < OPTIMIZE_CACHE_ENTRIES; i++) {
      fs.writeFileSync(stale(i), 'x');
      fs.writeFileSync(stale(i).replace(/\.onnx$/, '.json'), '{}');
      const t = new Date(Date.now() - (OPTIMIZE_CACHE_ENTRIES - i) * 60000);
      fs.utimesSync(stale(i), t, t);
    }
    const made = await optimizeCached(MODEL, { precision: 'fp16' }, dir);
    assert.ok(fs.existsSync(made.modelPath));
    assert.equal(fs.existsSync(stale(0)), false, 'the oldest entry is gone');
    assert.equal(fs.existsSync(stale(0).replace(/\.onnx$/, '.json')), false);
    assert.ok(fs.existsSync(stale(1)));
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.onnx')).length, OPTIMIZE_CACHE_ENTRIES);
  });
});
