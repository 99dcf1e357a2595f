import { strict as assert } from 'assert';
import { EdgePipeline, type FinishedTask } from '../../src/engine/pipeline/edge-pipeline';
import { getMemoryPoolManager } from '../../src/engine/memory/memory-pool';
import { buildMlp } from '../../src/engine/graph/builder';
import { ConfigError } from '../../src/engine/io/errors';
import { InputError } from '../../src/engine/errors';
import { FakeDevice } from './fake-device';

const model = buildMlp({ inputSize: 16, hidden: [8], outputSize: 3, seed: 11 });
const tensor = () => ({ type: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) });

describe('EdgePipeline pools, graph cache and OptimizationConfig', function () {
  let pipeline: EdgePipeline | undefined;
  afterEach(async function () {
    await pipeline?.stop();
    pipeline = undefined;
  });

  it('a graph cached with pool.cacheGraph is submittable; the devices use the manager pools, sized and pre-allocated as asked', async function () {
    const manager = getMemoryPoolManager();
    manager.getPool(0).cacheGraph('from-cache', model, [[1, 16]], [[1, 3]]);
    pipeline = new EdgePipeline({ deviceCount: 1, poolSizeMb: 64, maxCachedGraphs: 4 }).start();
    const task = await new Promise<FinishedTask>((resolve) => pipeline!.submitTask('from-cache', tensor(), resolve));
    assert.equal(task.error, undefined, task.error?.message);
    assert.equal(task.outputs!.output.dims[1], 3);
    const pool = manager.getPool(0);
    const stats = pool.getStats();
    assert.equal(stats.poolSizeBytes, 64 * 1024 * 1024);
    assert.ok(stats.bufferHits > 0, `the first request found pre-allocated buffers (hits ${stats.bufferHits}, misses ${stats.bufferMisses})`);
    assert.ok(stats.graphCacheHits > 0, 'the pipeline looked the graph up in the pool');
    // the engine keeps maxCachedGraphs compiled graphs per device
    assert.equal(pipeline.getStats().graphCache.capacity, 4);
  });

  it('an id neither loaded nor cached fails with both lists', async function () {
    pipeline = new EdgePipeline({ deviceCount: 1 }).start();
    await assert.rejects(pipeline.run('nowhere', tensor()), (err: Error) => err instanceof InputError && /graph 'nowhere' is not loaded; loaded: \(none\); not cached in pools device-0 either/.test(err.message));
  });

  it('topsPerDevice is a number (the design compares it), with the per-device figures in topsByDevice', async function () {
    pipeline = new EdgePipeline({ deviceCount: 2 }).start();
    await pipeline.loadGraph('mlp', model);
    await Promise.all(Array.from({ length: 50 }, () => pipeline!.run('mlp', tensor())));
    const stats = pipeline.getStats();
    assert.equal(typeof stats.topsPerDevice, 'number');
    assert.deepEqual(Object.keys(stats.topsByDevice).sort(), ['cpu-0', 'cpu-1']);
    const sum = Object.values(stats.topsByDevice).reduce((a, b) => a + b, 0);
    assert.ok(sum > 0);
    assert.equal(stats.topsPerDevice, stats.totalTops / 2);
  });

  it('OptimizationConfig drives batching, requests in flight, the graph cache and the thermal target', async function () {
    const device = new FakeDevice({ id: 'warm', serviceMs: 1, maxInFlight: 8 });
    pipeline = new EdgePipeline({ devices: [device], config: { enableBatching: true, optimalBatchSize: 8, maxParallelGraphs: 3, targetTemperatureC: 50, enableThermalThrottling: true, enableZeroCopy: true, useMemoryPooling: true } }).start();
    await pipeline.loadGraph('mlp', model);
    const stats = pipeline.getStats();
    const batching = Object.values(stats.graphs)[0].batching;
    assert.deepEqual([batching.enabled, batching.maxBatchSize], [true, 8]);
    assert.equal(stats.graphCache.capacity, 3);
    device.temperatureC = 60;
    pipeline.engine.checkThermal();
    assert.equal(pipeline.engine.thermalState('warm')!.state, 'hot', 'above the 50 C target');
    await pipeline.stop();

    pipeline = new EdgePipeline({ deviceCount: 1, config: { pipelineDepth: 3 } }).start();
    assert.equal(pipeline.engine.getDevice('cpu-0')!.maxInFlight, 3);
  });

  it('cpuAffinityCores pins each CPU device to its share of the cores', async function () {
    const core = new (await import('../../src/engine/host/affinity')).CpuAffinityOptimizer().getPerformanceCores()[0];
    pipeline = new EdgePipeline({ deviceCount: 1, config: { cpuAffinityCores: [core] } }).start();
    const info = pipeline.engine.getDevice('cpu-0')!.info;
    // one worker whose onnxruntime pool has a thread to pin (the calling thread is never pinned)
    assert.deepEqual([info.workers, info.threadsPerWorker], [1, 2]);
  });

  it('refuses, by name and with the reason, the keys the engine cannot honour', function () {
    const refused = (config: object, pattern: RegExp, options: object = {}) =>
      assert.throws(() => new EdgePipeline({ deviceCount: 1, ...options, config }), (err: Error) => err instanceof ConfigError && pattern.test(err.message));
    refused({ enableZeroCopy: false }, /^OptimizationConfig\.enableZeroCopy: false is not supported: the engine always moves pooled input buffers/);
    refused({ useMemoryPooling: false }, /^OptimizationConfig\.useMemoryPooling: false is not supported/);
    refused({ enableThermalThrottling: false }, /^OptimizationConfig\.enableThermalThrottling: false is not supported: .*raise targetTemperatureC instead/);
    refused({ optimalBatchSize: 8 }, /^OptimizationConfig\.optimalBatchSize: 8 needs enableBatching: true/);
    refused({ enableBatching: true, optimalBatchSize: 0 }, /optimalBatchSize: expected an integer >= 1, got 0/);
    refused({ pipelineDepth: 4 }, /pipelineDepth: 4 contradicts maxParallelGraphsPerDevice 2/, { maxParallelGraphsPerDevice: 2 });
    refused({ maxParallelGraphs: 4 }, /maxParallelGraphs: 4 contradicts maxCachedGraphs 2/, { maxCachedGraphs: 2 });
    refused({ targetTemperatureC: -3 }, /targetTemperatureC: expected degrees C above 0, got -3/);
    refused({ cpuAffinityCores: [] }, /cpuAffinityCores: 0 core\(s\) for 1 devices/);
    assert.throws(() => new EdgePipeline({ devices: [new FakeDevice({ id: 'f' })], config: { cpuAffinityCores: [0] } }), /cpuAffinityCores: applies to the CPU devices the pipeline creates/);
  });
});
