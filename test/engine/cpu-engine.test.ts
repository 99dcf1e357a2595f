import { strict as assert } from 'assert';
import * as ort from 'onnxruntime-node';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { buildMlp, buildMobileNetLike, mulberry32 } from '../../src/engine/graph/builder';
import { ModelLoadError } from '../../src/engine/errors';
import { EventLoopMonitor } from '../../src/engine/telemetry/stats';
import { Worker } from 'worker_threads';
import { Decoder, decodeTask, type ToWorker } from '../../src/engine/devices/cpu/protocol';

const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, seed: 7 });

function randomInput(seed: number, n: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rand());
}

describe('engine on the cpu device (worker threads)', function () {
  this.timeout(60_000);
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('gives the same outputs as onnxruntime-node run directly, for single and batched tasks', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 2, threadsPerWorker: 1 })] });
    const g = await engine.loadGraph(mlp);
    const session = await ort.InferenceSession.create(mlp);
    for (const batch of [1, 3]) {
      const x = randomInput(batch, batch * 784);
      const expected = (await session.run({ input: new ort.Tensor('float32', x, [batch, 784]) })).output.data as Float32Array;
      const result = await engine.submit(g, { input: { type: 'float32', dims: [batch, 784], data: x } });
      assert.deepEqual(result.outputs.output.dims, [batch, 10]);
      assert.deepEqual(Array.from(result.outputs.output.data as Float32Array), Array.from(expected));
      assert.equal(result.batchSize, batch);
      assert.ok(result.timings.inferMs > 0 && result.timings.totalMs >= result.timings.inferMs);
    }
    await session.release();
  });

  it('runs many concurrent tasks across workers, each result matching its input', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 2, threadsPerWorker: 1 })] });
    const g = await engine.loadGraph(mlp);
    const session = await ort.InferenceSession.create(mlp);
    const inputs = Array.from({ length: 300 }, (_, i) => randomInput(100 + i, 784));
    const results = await Promise.all(inputs.map((x) => engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: x } })));
    for (const i of [0, 150, 299]) {
      const expected = (await session.run({ input: new ort.Tensor('float32', inputs[i], [1, 784]) })).output.data as Float32Array;
      assert.deepEqual(Array.from(results[i].outputs.output.data as Float32Array), Array.from(expected));
    }
    const stats = engine.getStats();
    assert.equal(stats.devices.cpu.completedTasks, 300);
    assert.ok(stats.memory.cpu.bufferHits > 0, 'hand-off arenas come from the pool and are reused');
    await session.release();
  });

  it('hands a task to an idle worker at once, and the tasks for a busy one together at the end of the turn', async function () {
    const device = new CpuDevice({ id: 'cpu', workers: 1, threadsPerWorker: 1 });
    engine = new InferenceEngine({ devices: [device] });
    await device.load({ key: 'mlp', model: mlp, session: {} });
    const runs: number[] = [];
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (this: Worker, msg: ToWorker, transfer?: readonly ArrayBuffer[]) {
      if (msg.op === 'run') {
        const d = new Decoder(msg.tasks, msg.strings);
        let tasks = 0;
        for (; !d.done; tasks++) decodeTask(d);
        runs.push(tasks);
      }
      return post.call(this, msg, transfer as ArrayBuffer[]);
    } as typeof post;
    try {
      const run = () => device.run({ graphKey: 'mlp', inputs: [{ name: 'input', type: 'float32', dims: [1, 784], data: randomInput(9, 784) }] });
      const first = run();
      assert.deepEqual(runs, [1], 'the idle worker got the first task within the turn');
      const more = [run(), run()];
      assert.deepEqual(runs, [1], 'tasks for a busy worker wait for the end of the turn');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(runs, [1, 2], 'and then leave in one message');
      for (const r of await Promise.all([first, ...more])) assert.deepEqual(r.outputs.output.dims, [1, 10]);
    } finally {
      Worker.prototype.postMessage = post;
    }
  });

  it('moves a pooled tensor to the worker without copying and gives the caller its result', async function () {
    const device = new CpuDevice({ id: 'cpu', workers: 1, threadsPerWorker: 1 });
    engine = new InferenceEngine({ devices: [device] });
    const g = await engine.loadGraph(mlp);
    const tensor = engine.allocateTensor('float32', [1, 784]);
    (tensor.data as Float32Array).set(randomInput(5, 784));
    const copy = Float32Array.from(tensor.data as Float32Array);
    const [viaPool, viaCopy] = await Promise.all([
      engine.submit(g, { input: tensor }),
      engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: copy } }),
    ]);
    assert.equal(tensor.data.buffer.byteLength, 0, 'the pooled buffer was transferred (detached here)');
    assert.deepEqual(Array.from(viaPool.outputs.output.data as Float32Array), Array.from(viaCopy.outputs.output.data as Float32Array));
    const pool = device.memoryStats();
    assert.ok(pool.bufferMisses > 0);
    // the next hand-offs reuse pooled arenas
    for (let i = 0; i < 5; i++) await engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: copy } });
    assert.ok(device.memoryStats().bufferHits > pool.bufferHits, 'pooled buffers are reused');
  });

  it('keeps the main event loop free while the CPU is saturated with CNN inferences', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 2, threadsPerWorker: 1 })] });
    // 320x320: a single-core inference (~20 ms here) well above the scheduling noise of a loaded host.
    const cnn = buildMobileNetLike({ inputSize: 320, seed: 1 });
    const g = await engine.loadGraph(cnn);
    const x = randomInput(9, 3 * 320 * 320);
    // The same work on the main thread, as a plain onnxruntime-node loop would do it, for contrast:
    // one intra-op thread, so each run blocks the loop for a whole single-core inference.
    const session = await ort.InferenceSession.create(cnn, { intraOpNumThreads: 1 });
    const feeds = { input: new ort.Tensor('float32', x, [1, 3, 320, 320]) };
    const monitor = new EventLoopMonitor();
    monitor.start();
    let until = Date.now() + 1000;
    while (Date.now() < until) await session.run(feeds);
    const raw = monitor.summary();
    await session.release();

    engine.resetStats();
    until = Date.now() + 1000;
    const loop = async () => {
      while (Date.now() < until) await engine.submit(g, { input: { type: 'float32', dims: [1, 3, 320, 320], data: x } });
    };
    await Promise.all([loop(), loop(), loop(), loop()]);
    const stats = engine.getStats();
    assert.ok(stats.devices.cpu.completedTasks >= 10, `completed ${stats.devices.cpu.completedTasks}`);
    // Ratios measured in one run, so a loaded machine slows both alike.
    assert.ok(stats.eventLoopDelayMs.p99 < raw.p99 / 2, `event-loop p99: engine ${stats.eventLoopDelayMs.p99} ms, main-thread loop ${raw.p99} ms`);
  });

  it('reports the statistics the promised API lists, from measured events', async function () {
    const device = new CpuDevice({ id: 'cpu', workers: 1, threadsPerWorker: 1 });
    engine = new InferenceEngine({ devices: [device] });
    const g = await engine.loadGraph(mlp);
    const x = randomInput(1, 784);
    for (let i = 0; i < 50; i++) await engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: x } });
    let s = engine.getStats();
    for (const key of ['deviceCount', 'totalThroughputOpsPerSec', 'totalTops', 'topsPerDevice', 'targetTops', 'performanceRatio', 'devices']) assert.ok(key in s, key);
    const d = s.devices.cpu;
    for (const key of ['deviceId', 'totalTasks', 'completedTasks', 'failedTasks', 'successRate', 'avgLatencyMs', 'minLatencyMs', 'maxLatencyMs', 'throughputOpsPerSec', 'achievedTops', 'queueDepths']) assert.ok(key in d, key);
    assert.equal(d.completedTasks, 50);
    assert.equal(d.successRate, 1);
    // the histogram keeps 3 significant digits: order holds within that resolution
    const within = (a: number, b: number) => a <= b * 1.001 + 1e-3;
    assert.ok(within(d.minLatencyMs, d.latencyMs.p50) && within(d.latencyMs.p50, d.latencyMs.p99) && within(d.latencyMs.p99, d.maxLatencyMs), JSON.stringify(d.latencyMs));
    assert.ok(Math.abs(d.achievedTops - (d.inferencesPerSec * 203_530) / 1e12) < 1e-9);
    // no peak measured yet: no utilization, no target
    assert.equal(d.utilization, null);
    assert.equal(s.targetTops, null);
    device.setPeakOpsPerSec('fp32', 50e9);
    for (let i = 0; i < 20; i++) await engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: x } });
    s = engine.getStats();
    assert.equal(s.targetTops, 0.05);
    assert.ok(s.devices.cpu.utilization! > 0 && s.devices.cpu.utilization! < 1);
    assert.equal(s.simulated, false);
  });

  it('loads the same model again as a cache hit, and frees it on release', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1 })], maxCachedGraphs: 2 });
    const a = await engine.loadGraph(mlp);
    const b = await engine.loadGraph(Uint8Array.from(mlp));
    assert.equal(a.id, b.id);
    let cache = engine.getStats().graphCache;
    assert.equal(cache.size, 1);
    assert.ok(cache.hits >= 1);
    await engine.releaseGraph(a);
    await engine.releaseGraph(b);
    assert.equal(engine.graphCount(), 1, 'idle but still loaded for a redeploy');
    const c = await engine.loadGraph(mlp);
    assert.equal(c.id, a.id);
    await engine.releaseGraph(c, { free: true });
    assert.equal(engine.graphCount(), 0);
    // the cache bounds idle graphs: three held models stay loaded over a capacity of two, and
    // releasing one lets it go (the least recently used idle one)
    const models = [1, 2, 3].map((seed) => buildMlp({ inputSize: 8, hidden: [4], outputSize: 2, seed }));
    const held = [];
    for (const m of models) held.push(await engine.loadGraph(m));
    cache = engine.getStats().graphCache;
    assert.equal(cache.size, 3, 'graphs in use are never evicted');
    const evictionsBefore = cache.evictions;
    await engine.releaseGraph(held[0]);
    cache = engine.getStats().graphCache;
    assert.equal(cache.size, 2);
    assert.equal(cache.evictions, evictionsBefore + 1);
    assert.equal(engine.graphCount(), 2, 'the released graph was evicted and freed');
  });

  it('refuses missing, unreadable and corrupt models with errors that say what arrived', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1 })] });
    await assert.rejects(engine.loadGraph('/no/such/model.onnx'), (e: Error) => e instanceof ModelLoadError && /no such file; expected a readable \.onnx file/.test(e.message));
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-'));
    const truncated = path.join(dir, 'truncated.onnx');
    await fs.writeFile(truncated, mlp.subarray(0, 1000));
    await assert.rejects(engine.loadGraph(truncated), (e: Error) => e instanceof ModelLoadError && e.message.includes(truncated));
    await assert.rejects(engine.loadGraph(new TextEncoder().encode('hello, not a model')), ModelLoadError);
    await fs.rm(dir, { recursive: true });
  });

  it('survives a worker crash: in-flight tasks are retried on another device and the worker is replaced', async function () {
    const a = new CpuDevice({ id: 'a', workers: 1, threadsPerWorker: 1 });
    const b = new CpuDevice({ id: 'b', workers: 1, threadsPerWorker: 1 });
    engine = new InferenceEngine({ devices: [a, b] });
    const g = await engine.loadGraph(mlp, { queueCapacity: 4096 });
    const x = randomInput(3, 784);
    const tasks = Array.from({ length: 2000 }, () => engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: x } }));
    // Device a's worker exits while tasks are in flight. Not worker.terminate(): terminating a thread
    // inside onnxruntime's run() can abort the whole process. The worker's own 'close' op exits it
    // between runs, dropping the runs it holds, which is what the engine must survive.
    const slot = (a as unknown as { slots: Array<{ inFlight: Map<unknown, unknown>; worker: { postMessage(msg: unknown): void } }> }).slots[0];
    while (slot.inFlight.size === 0) await new Promise((r) => setImmediate(r));
    slot.worker.postMessage({ op: 'close' });
    const outcome = await Promise.allSettled(tasks);
    assert.equal(outcome.filter((o) => o.status === 'rejected').length, 0);
    assert.ok(engine.getStats().graphs[g.id].retried > 0);
    // the replacement worker reloads the graph and serves again
    await new Promise((r) => setTimeout(r, 300));
    const again = await engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: x } }, { deviceId: 'a' });
    assert.equal(again.deviceId, 'a');
  });
});

describe('execution providers', function () {
  it('falls back to cpu when a requested provider throws at session creation, and says why', async function () {
    const engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1 })] });
    const warnings: Error[] = [];
    engine.on('warning', (w: Error) => warnings.push(w));
    try {
      const g = await engine.loadGraph(mlp, { session: { executionProviders: ['cuda'] } });
      const r = await engine.submit(g, { input: { type: 'float32', dims: [1, 784], data: new Float32Array(784) } });
      assert.deepEqual(r.outputs.output.dims, [1, 10]);
      const placement = engine.getStats().graphs[g.id].placement.cpu;
      assert.equal(placement.executionProvider, 'cpu');
      assert.match(placement.fallbackReason!, /^cuda unavailable \(.+\); using cpu$/);
      assert.ok(warnings.some((w) => /cuda unavailable/.test(w.message)));
    } finally {
      await engine.close();
    }
  });
});
