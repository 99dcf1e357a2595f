import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The repository root (this file runs from dist/test/seed/). */
const ROOT = path.resolve(__dirname, '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string };

/**
 * The seed API (the original Python design's modules under TypeScript names) called the way a
 * script copied from its description would: every name from the package entry, in the order the
 * description lists them, each answering with measured numbers.
 */
describe('the seed API, called as a script would', function () {
  const api = require(path.join(ROOT, pkg.main)) as typeof import('../../src/engine');
  const model = api.buildMlp({ inputSize: 16, hidden: [32], outputSize: 4, seed: 3 });
  const input = { type: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.5) };
  let dir: string;
  let modelPath: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seed-api-'));
    modelPath = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(modelPath, model);
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pipeline: getEdgePipeline, a graph cached in the pool, submitTask in a loop and awaited, getStats with measured figures', async function () {
    const pipeline = api.getEdgePipeline({ deviceCount: 2, maxParallelGraphs: 4 });
    try {
      api.getMemoryPoolManager().getPool(0).cacheGraph('mlp', model, [[1, 16]], [[1, 4]]);
      const finished = await new Promise<import('../../src/engine').FinishedTask[]>((resolve) => {
        const done: import('../../src/engine').FinishedTask[] = [];
        for (let i = 0; i < 2_000; i++) {
          pipeline.submitTask('mlp', input, (task) => {
            done.push(task);
            if (done.length === 2_000) resolve(done);
          });
        }
      });
      assert.deepEqual(finished.filter((t) => t.error).map((t) => t.error!.message), []);
      const awaited = await pipeline.run('mlp', input);
      assert.equal(awaited.outputs.output.dims[1], 4);

      const stats = pipeline.getStats();
      assert.equal(stats.deviceCount, 2);
      assert.ok(stats.totalThroughputOpsPerSec > 0, `throughput ${stats.totalThroughputOpsPerSec}`);
      assert.ok(stats.totalTops > 0 && typeof stats.topsPerDevice === 'number' && stats.topsPerDevice > 0);
      // measured-peak figures: numbers once the CPU's peak is measured on this host, null (not a guess) before
      for (const key of ['targetTops', 'performanceRatio'] as const) assert.ok(stats[key] === null || stats[key]! > 0, `${key} ${stats[key]}`);
      assert.equal(stats.simulated, false);
      let completed = 0;
      for (const id of ['cpu-0', 'cpu-1']) {
        const d = stats.devices[id];
        assert.equal(d.deviceId, id);
        for (const key of ['totalTasks', 'completedTasks', 'failedTasks', 'successRate', 'avgLatencyMs', 'minLatencyMs', 'maxLatencyMs', 'throughputOpsPerSec', 'achievedTops'] as const) {
          assert.equal(typeof d[key], 'number', `${id}.${key}`);
        }
        assert.deepEqual([typeof d.queueDepths.preprocessing, typeof d.queueDepths.inference, typeof d.queueDepths.postprocessing], ['number', 'number', 'number']);
        completed += d.completedTasks;
        if (d.completedTasks > 0) assert.ok(d.avgLatencyMs > 0 && d.minLatencyMs > 0 && d.maxLatencyMs >= d.minLatencyMs && d.successRate === 1, JSON.stringify(d));
      }
      assert.equal(completed, 2_001);
      const pool0 = api.getMemoryPoolManager().getPool(0).getStats();
      assert.ok(pool0.bufferHits + pool0.bufferMisses > 0, 'device 0 packs its requests in the manager pool 0');
    } finally {
      await pipeline.stop();
    }
  });

  it('EdgePipeline, DevicePipeline and BatchProcessor; a simulated stick says it is simulated', async function () {
    const edge = new api.EdgePipeline({ deviceCount: 1, maxParallelGraphsPerDevice: 2 }).start();
    const memoryPool = new api.MemoryPool({ deviceId: 'one', poolSizeMb: 16 });
    const one = new api.DevicePipeline({ deviceId: 0, memoryPool, maxParallelGraphs: 2 }).start();
    const sticks = new api.EdgePipeline({ devices: [new api.SimNcs2Device({ id: 'stick-0', registry: new api.StickRegistry() })] }).start();
    try {
      for (const p of [edge, one, sticks]) {
        await p.loadGraph('mlp', model);
        const r = await new Promise<import('../../src/engine').FinishedTask>((resolve) => p.submitTask('mlp', input, resolve));
        assert.equal(r.error, undefined, r.error?.message);
      }
      assert.ok(memoryPool.getStats().bufferHits + memoryPool.getStats().bufferMisses > 0);
      const stickStats = sticks.getStats();
      assert.equal(stickStats.simulated, true);
      assert.equal(stickStats.devices['stick-0'].simulated, true);
      assert.ok(stickStats.devices['stick-0'].peakTops! > 0 && stickStats.devices['stick-0'].completedTasks === 1);

      const batcher = new api.BatchProcessor({ minBatchSize: 1, maxBatchSize: 32, targetLatencyMs: 20 });
      const graph = await batcher.loadGraph(edge.engine, model);
      const batched = await Promise.all(Array.from({ length: 16 }, () => batcher.submit(edge.engine, graph, { input: { ...input, data: input.data.slice() } })));
      assert.ok(batched.every((r) => r.outputs.output.dims[1] === 4));
    } finally {
      await Promise.all([edge.stop(), one.stop(), sticks.stop()]);
    }
  });

  it('memory pool and graph cache, and the manager', async function () {
    const pool = new api.MemoryPool({ deviceId: 'seed', poolSizeMb: 8, maxCachedGraphs: 10 });
    const buffer = pool.allocateBuffer(4096);
    assert.equal(pool.getBuffer(buffer.id), buffer);
    pool.releaseBuffer(buffer);
    const again = pool.allocateBuffer(4096);
    pool.freeBuffer(again);
    const mapped = await pool.mmapFile(modelPath);
    assert.equal(mapped.size, model.byteLength);
    pool.cacheGraph('g', model, [[1, 16]], [[1, 4]]);
    assert.equal(pool.getCachedGraph('g')!.graphData, model);
    const stats = pool.getStats();
    for (const key of ['deviceId', 'totalAllocatedBytes', 'peakMemoryBytes', 'poolSizeBytes', 'utilization', 'bufferCount', 'availableBuffers', 'bufferHits', 'bufferMisses', 'bufferHitRate', 'cachedGraphs', 'graphCacheHits', 'graphCacheMisses', 'graphCacheHitRate'] as const) {
      assert.notEqual(stats[key], undefined, key);
    }
    assert.deepEqual([stats.bufferHits, stats.bufferMisses, stats.cachedGraphs, stats.graphCacheHits], [1, 1, 1, 1]);
    pool.resetStats();
    pool.clear();
    assert.equal(pool.getStats().cachedGraphs, 0);
    const manager = api.getMemoryPoolManager({ deviceCount: 2, poolSizeMb: 64 });
    assert.equal(manager.getPool(1).deviceId, 'device-1');
    assert.ok('device-0' in manager.getAllStats());
  });

  it('optimizer, batch optimizer, thermal, CPU affinity and analysis', async function () {
    const config: import('../../src/engine').OptimizationConfig = { useFp16: true, enableBatching: true, optimalBatchSize: 8, maxParallelGraphs: 4, pipelineDepth: 4, targetTemperatureC: 70, enableThermalThrottling: true, enableZeroCopy: true, useMemoryPooling: true };
    const fp16 = await api.GraphOptimizer.optimizeGraph(modelPath, path.join(dir, 'fp16.onnx'), config);
    assert.equal(fp16.precision, 'fp16');
    const calibration = Array.from({ length: 8 }, (_, i) => new Float32Array(16).fill(i / 8));
    const int8 = await api.GraphOptimizer.quantizeToInt8(modelPath, calibration, path.join(dir, 'int8.onnx'));
    assert.equal(int8.precision, 'int8');
    const stick = await new api.NCS2PerformanceOptimizer(config).optimizeModel(modelPath, path.join(dir, 'ncs2.onnx'));
    assert.equal(stick.precision, 'fp16');
    const planned = await new api.NCS2PerformanceOptimizer(config).getOptimalConfig(model, 2);
    assert.ok(planned.simulated && planned.config.pipelineDepth! >= 1 && planned.evidence.plans!.every((p) => p.throughputFps > 0));
    // the same config object drives a pipeline
    const configured = new api.EdgePipeline({ deviceCount: 1, config }).start();
    await configured.stop();

    const best = await api.BatchOptimizer.findOptimalBatchSize(model, [1, 16], { maxBatchSize: 4, targetLatencyMs: 100, durationMs: 100 });
    assert.ok([1, 2, 4].includes(best.batchSize) && best.measurements.every((m) => m.samplesPerSec > 0));

    const sim = new api.SimNcs2Device({ id: 'warm-stick', registry: new api.StickRegistry() });
    try {
      const thermal = new api.ThermalOptimizer([sim]);
      const temperature = thermal.getDeviceTemperature('warm-stick')!;
      assert.ok(temperature > 0);
      assert.equal(thermal.getThermalHeadroom('warm-stick'), 70 - temperature);
      assert.equal(thermal.shouldThrottle('warm-stick', 70), temperature >= 70);
    } finally {
      await sim.close();
    }

    const affinity = new api.CpuAffinityOptimizer();
    const cores = affinity.getPerformanceCores();
    assert.ok(cores.length > 0);
    assert.deepEqual(affinity.setThreadAffinity([cores[0]]).coreIds, [cores[0]]);

    assert.equal(api.PerformanceAnalyzer.calculateTops(1000, 2e9), 2);
    const ops = await api.PerformanceAnalyzer.estimateModelOps(model);
    assert.ok(ops.total >= 2 * (16 * 32 + 32 * 4));
    const analysis = api.PerformanceAnalyzer.analyzePerformance({ throughputFps: 5000, latencyMs: 1.5, deviceCount: 1, opsPerInference: ops.total });
    for (const key of ['throughputFps', 'latencyMs', 'totalTops', 'topsPerDevice', 'theoreticalTops', 'targetTops', 'efficiencyVsTheoretical', 'progressToTarget', 'bandwidthUtilization', 'recommendations'] as const) {
      assert.ok(key in analysis, key);
    }
    assert.equal(analysis.totalTops, api.PerformanceAnalyzer.calculateTops(5000, ops.total));
  });
});
