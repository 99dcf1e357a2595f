import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EdgePipeline } from '../../src/engine/pipeline/edge-pipeline';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { ensurePeak, measurePeaksWhenIdle, peakCachePath, peakKey, readCachedPeak } from '../../src/engine/telemetry/peak';
import { buildMlp } from '../../src/engine/graph/builder';

/** The CPU's measured peak must be a ceiling: disturbed figures are not kept, exceeded ones are dropped. */
describe('peak figures that are not a ceiling', function () {
  const savedDir = process.env.NCS2_CACHE_DIR;
  let dir: string;
  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-peak-stale-'));
    process.env.NCS2_CACHE_DIR = dir;
  });
  afterEach(async function () {
    if (savedDir === undefined) delete process.env.NCS2_CACHE_DIR;
    else process.env.NCS2_CACHE_DIR = savedDir;
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a measurement disturbed by other load, on every attempt, is neither cached nor given to the device', async function () {
    const device = new CpuDevice({ id: 'cpu-busy', workers: 1, threadsPerWorker: 1 });
    const engine = new InferenceEngine({ devices: [device] });
    try {
      // maxOtherLoad -1: any host counts as busy, so every attempt is disturbed
      const r = await ensurePeak(engine, device.id, { precisions: ['fp32'], durationMs: 600, maxOtherLoad: -1 });
      assert.deepEqual(r.disturbed, ['fp32']);
      assert.equal(r.fp32, undefined);
      assert.equal(await readCachedPeak(peakKey(device)), undefined, 'nothing cached');
      assert.equal(engine.getStats().devices['cpu-busy'].peakTops, null, 'the device has no peak, so no utilization');

      const quiet = await ensurePeak(engine, device.id, { precisions: ['fp32'], durationMs: 600, maxOtherLoad: 1 });
      assert.equal(quiet.disturbed, undefined);
      assert.equal((await readCachedPeak(peakKey(device)))!.fp32, quiet.fp32);
      assert.equal(device.peakOpsPerSec('fp32'), quiet.fp32);
    } finally {
      await engine.close();
    }
  });

  it('a device that did more than its peak never shows utilization over 100 %: the peak is dropped from the device and the cache', async function () {
    const pipeline = new EdgePipeline({ deviceCount: 1 }).start();
    try {
      const device = pipeline.engine.getDevice('cpu-0')!;
      // a figure far below what the device does (as one measured on a busy host would be)
      (device as CpuDevice).setPeakOpsPerSec('fp32', 1000);
      await fs.writeFile(peakCachePath(), JSON.stringify({ version: 1, entries: { [peakKey(device)]: { fp32: 1000, measuredAt: 't', method: 'm', key: peakKey(device) } } }));
      await pipeline.loadGraph('mlp', buildMlp({ inputSize: 64, hidden: [64], outputSize: 8, seed: 2 }));
      await Promise.all(Array.from({ length: 200 }, () => pipeline.run('mlp', { type: 'float32', dims: [1, 64], data: new Float32Array(64) })));
      assert.ok(pipeline.engine.getStats().devices['cpu-0'].utilization! > 1, 'the engine alone would report over 100 %');
      const stats = pipeline.getStats();
      assert.equal(stats.devices['cpu-0'].utilization, null);
      assert.equal(stats.devices['cpu-0'].peakTops, null);
      for (let i = 0; i < 50 && (await readCachedPeak(peakKey(device)))?.fp32 !== undefined; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal((await readCachedPeak(peakKey(device)))!.fp32, undefined, 'the stale figure left the cache, so the next ensurePeak measures');
    } finally {
      await pipeline.stop();
    }
  });
});

describe('measurePeaksWhenIdle (the engine measures the CPU peak itself)', function () {
  const savedDir = process.env.NCS2_CACHE_DIR;
  let dir: string;
  let engine: InferenceEngine;
  let device: CpuDevice;
  let stop: (() => void) | undefined;
  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-peak-idle-'));
    process.env.NCS2_CACHE_DIR = dir;
    device = new CpuDevice({ id: 'cpu-idle', workers: 1, threadsPerWorker: 1 });
    engine = new InferenceEngine({ devices: [device] });
  });
  afterEach(async function () {
    stop?.();
    await engine.close();
    if (savedDir === undefined) delete process.env.NCS2_CACHE_DIR;
    else process.env.NCS2_CACHE_DIR = savedDir;
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('measures a missing peak once the engine is idle, gives it to the device and caches it', async function () {
    const measured = await new Promise<number>((resolve, reject) => {
      stop = measurePeaksWhenIdle(engine, { idleMs: 100, checkEveryMs: 50, durationMs: 400, precisions: ['fp32'], maxOtherLoad: 1, onPeak: (_id, r) => resolve(r.fp32!), onError: reject });
    });
    assert.ok(measured > 1e9, `fp32 peak ${measured}`);
    assert.equal(device.peakOpsPerSec('fp32'), measured);
    assert.equal((await readCachedPeak(peakKey(device)))!.fp32, measured);
    assert.ok(engine.getStats().devices['cpu-idle'].peakTops! > 0, 'utilization has a peak to divide by');
  });

  it('a task arriving during the measurement interrupts it; nothing is kept', async function () {
    const graph = await engine.loadGraph(buildMlp({ inputSize: 16, hidden: [8], outputSize: 3, seed: 4 }), { name: 'flow' });
    const interrupted = new Promise<Error>((resolve) => {
      stop = measurePeaksWhenIdle(engine, { idleMs: 100, checkEveryMs: 50, durationMs: 2000, precisions: ['fp32'], maxOtherLoad: 1, onError: resolve, onPeak: () => resolve(new Error('measured although work arrived')) });
    });
    // wait until the calibration graph is loaded and running
    while (engine.graphCount() < 2) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    const result = await engine.submit(graph, { input: { type: 'float32', dims: [1, 16], data: new Float32Array(16) } });
    const err = await interrupted;
    assert.match(err.message, /peak calibration of cpu-idle was interrupted: other work arrived/);
    assert.equal(await readCachedPeak(peakKey(device)), undefined);
    assert.equal(device.peakOpsPerSec('fp32'), undefined);
    // the flow's task waited only behind the GEMM runs already handed to the worker (a few ms each)
    assert.ok(result.timings.totalMs < 500, `the task took ${result.timings.totalMs.toFixed(1)} ms`);
  });
});
