import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { QueueFullError } from '../../src/engine/errors';
import { resolveImageSpec } from '../../src/engine/io/preprocess';
import { loadLabels, type Classification, type RawOutput } from '../../src/engine/io/postprocess';
import { runInference, type InferenceSetup } from '../../src/engine/io/infer';

const ROOT = path.resolve(__dirname, '../../..');
const MODEL = path.join(ROOT, 'models', 'mnist', 'mnist-cnn.onnx');
const SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');

describe('io/infer with the real MNIST model', function () {
  this.timeout(30000);
  let engine: InferenceEngine;
  let setup: InferenceSetup;

  before(async function () {
    engine = new InferenceEngine();
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-io-test', workers: 1 });
    const handle = await engine.loadGraph(MODEL, { devices: ['cpu-io-test'] });
    setup = {
      handle,
      image: resolveImageSpec(handle.info.inputs[0]),
      maxBatch: 64,
      output: { kind: 'classification', topK: 3, labels: await loadLabels(path.join(ROOT, 'models', 'mnist', 'labels.txt')) },
    };
  });

  after(async function () {
    await engine.close();
  });

  it('classifies every sample PNG and resized JPEG as the digit in its file name', async function () {
    const files = fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png')).map((f) => path.join(SAMPLES, f));
    files.push(...fs.readdirSync(path.join(SAMPLES, 'large')).map((f) => path.join(SAMPLES, 'large', f)));
    assert.equal(files.length, 40);
    for (const file of files) {
      const { payload, inference } = await runInference(engine, setup, fs.readFileSync(file));
      const result = payload as Classification;
      assert.equal(result.label, path.basename(file).split('-')[1][0], file);
      assert.ok(result.score > 0.9 && result.score <= 1, `${file}: score ${result.score}`);
      assert.equal(inference.batchSize, 1);
      assert.equal(inference.device, 'cpu-io-test');
      assert.ok(inference.totalMs >= inference.inferMs && inference.inferMs > 0);
    }
  });

  it('returns one result per image for an array, in order', async function () {
    const names = ['9024-9.png', '0007-0.png', '5138-5.png'];
    const { payload, inference } = await runInference(engine, setup, names.map((n) => fs.readFileSync(path.join(SAMPLES, n))));
    assert.deepEqual((payload as Classification[]).map((r) => r.label), ['9', '0', '5']);
    assert.equal(inference.batchSize, 3);
  });

  it('raw preset gives every output with its dims', async function () {
    const raw: InferenceSetup = { ...setup, output: { kind: 'raw', format: 'array' } };
    const { payload } = await runInference(engine, raw, { data: new Array(2 * 784).fill(0), dims: [2, 1, 28, 28] });
    const logits = (payload as Record<string, RawOutput>).logits;
    assert.deepEqual(logits.dims, [2, 10]);
    assert.equal(logits.data.length, 20);
  });

  it('gives pooled input back to the pool when the queue refuses it', async function () {
    const tight = await engine.loadGraph(MODEL, { devices: ['cpu-io-test'], queueCapacity: 1, queuePolicy: 'reject' });
    try {
      const busy: InferenceSetup = { ...setup, handle: tight };
      // Plain arrays are converted into pooled tensors, so every request takes one from the pool.
      const runs = Array.from({ length: 40 }, () => runInference(engine, busy, { data: new Array(784).fill(0), dims: [1, 1, 28, 28] }));
      const settled = await Promise.allSettled(runs);
      const refused = settled.filter((s) => s.status === 'rejected' && s.reason instanceof QueueFullError);
      assert.ok(refused.length > 0, 'a burst of 40 over a queue of 1 must be refused in part');
      assert.equal(refused.length + settled.filter((s) => s.status === 'fulfilled').length, 40);
      const memory = engine.pool.getStats();
      assert.equal(memory.bufferCount - memory.availableBuffers, 0, 'no pooled buffer is left in use');
    } finally {
      await engine.releaseGraph(tight);
    }
  });
});
