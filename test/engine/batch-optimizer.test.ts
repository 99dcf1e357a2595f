import { strict as assert } from 'assert';
import { BatchOptimizer, BatchProcessor } from '../../src/engine/pipeline/batch-optimizer';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { buildMlp } from '../../src/engine/graph/builder';

const mlp = buildMlp({ inputSize: 64, hidden: [32], outputSize: 4, seed: 2 });

describe('BatchOptimizer and BatchProcessor', function () {
  it('measures each batch size and picks the fastest within the latency target', async function () {
    const r = await BatchOptimizer.findOptimalBatchSize(mlp, [1, 64], { maxBatchSize: 8, targetLatencyMs: 1000, durationMs: 100, devices: [new CpuDevice({ id: 'cpu', workers: 1 })] });
    assert.deepEqual(r.measurements.map((m) => m.batchSize), [1, 2, 4, 8]);
    assert.ok(r.measurements.every((m) => m.runs > 0 && m.samplesPerSec > 0 && m.p50Ms <= m.p99Ms));
    const best = r.measurements.reduce((a, b) => (b.samplesPerSec > a.samplesPerSec ? b : a));
    assert.equal(r.batchSize, best.batchSize);
    assert.equal(r.withinTarget, true);
  });

  it('falls back to batch 1 and says so when nothing meets the target', async function () {
    const r = await BatchOptimizer.findOptimalBatchSize(mlp, [64], { maxBatchSize: 2, targetLatencyMs: 0.000001, durationMs: 50, devices: [new CpuDevice({ id: 'cpu', workers: 1 })] });
    assert.equal(r.batchSize, 1);
    assert.equal(r.withinTarget, false);
  });

  it('refuses a model with a fixed batch dimension', async function () {
    const fixed = buildMlp({ inputSize: 64, hidden: [32], outputSize: 4, seed: 2, batch: 1 });
    await assert.rejects(BatchOptimizer.findOptimalBatchSize(fixed, [1, 64], { devices: [new CpuDevice({ id: 'cpu', workers: 1 })] }), /fixed batch dimension \(1\)/);
  });

  it('BatchProcessor loads graphs with its batching policy', async function () {
    const engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1 })] });
    try {
      const p = new BatchProcessor({ maxBatchSize: 16, targetLatencyMs: 5 });
      const g = await p.loadGraph(engine, mlp);
      const r = await p.submit(engine, g, { input: { type: 'float32', dims: [1, 64], data: new Float32Array(64) } });
      assert.deepEqual(r.outputs.output.dims, [1, 4]);
      const b = engine.getStats().graphs[g.id].batching;
      assert.equal(b.enabled, true);
      assert.equal(b.maxBatchSize, 16);
      assert.equal(b.targetLatencyMs, 5);
    } finally {
      await engine.close();
    }
  });
});
