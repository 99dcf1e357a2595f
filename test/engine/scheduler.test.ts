import { strict as assert } from 'assert';
import { InferenceEngine, type GraphHandle, type TaskResult } from '../../src/engine/pipeline/engine';
import { buildMlp } from '../../src/engine/graph/builder';
import { DeadlineExceededError, DeviceError, EngineClosedError, InputError, QueueFullError } from '../../src/engine/errors';
import { mulberry32 } from '../../src/engine/graph/builder';
import { FakeDevice } from './fake-device';
import { BatchController } from '../../src/engine/pipeline/batcher';

const model = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 3 });

function feeds(value: number) {
  return { input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array([value, 0, 0, 0]) } };
}

/** Waits for every promise and sorts outcomes, so exactly-once can be checked. */
async function settleAll(promises: Promise<TaskResult>[]) {
  const outcomes = await Promise.allSettled(promises);
  return {
    ok: outcomes.filter((o): o is PromiseFulfilledResult<TaskResult> => o.status === 'fulfilled').map((o) => o.value),
    failed: outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason as Error),
  };
}

describe('scheduler', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('routes each result to its own task', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', serviceMs: 2, maxInFlight: 4 })] });
    const g = await engine.loadGraph(model);
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => engine.submit(g, feeds(i))));
    results.forEach((r, i) => assert.equal((r.outputs.output.data as Float32Array)[0], i));
  });

  it('reads a run time rising at the same load as throttling only on devices that throttle silently', async function () {
    const stick = new FakeDevice({ id: 'stick', serviceMs: 2, maxInFlight: 1, throttlesSilently: true });
    const cpu = new FakeDevice({ id: 'cpu', serviceMs: 2, maxInFlight: 1 });
    engine = new InferenceEngine({ devices: [stick, cpu], thermalIntervalMs: 60_000 });
    const g = await engine.loadGraph(model);
    const runOn = async (deviceId: string, n: number) => {
      for (let i = 0; i < n; i++) await engine.submit(g, feeds(i), { deviceId });
    };
    await Promise.all([runOn('stick', 25), runOn('cpu', 25)]);
    engine.checkThermal();
    assert.deepEqual([engine.getStats().devices.stick.thermal.state, engine.getStats().devices.cpu.thermal.state], ['normal', 'normal']);
    // Both slow down 4x at the same load (one run at a time).
    stick.setServiceMs(8);
    cpu.setServiceMs(8);
    await Promise.all([runOn('stick', 25), runOn('cpu', 25)]);
    engine.checkThermal();
    const stats = engine.getStats().devices;
    assert.notEqual(stats.stick.thermal.state, 'normal', 'the stick is judged hot from its run times');
    assert.match(stats.stick.thermal.reason, /service time \d+\.\d+x its best: throttling suspected/);
    assert.equal(stats.cpu.thermal.state, 'normal', "the CPU device's slower runs are contention, not heat");
  });

  it('gives a faster device a larger share, by measured service time', async function () {
    const fast = new FakeDevice({ id: 'fast', serviceMs: 2, maxInFlight: 2 });
    const slow = new FakeDevice({ id: 'slow', serviceMs: 12, maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [fast, slow] });
    const g = await engine.loadGraph(model);
    await Promise.all(Array.from({ length: 120 }, (_, i) => engine.submit(g, feeds(i))));
    assert.ok(fast.runs > slow.runs * 3, `fast ran ${fast.runs}, slow ran ${slow.runs}`);
    assert.equal(fast.runs + slow.runs, 120);
  });

  it('never hands a device more than its in-flight cap', async function () {
    const d = new FakeDevice({ id: 'a', serviceMs: 1, maxInFlight: 3, parallelism: 1 });
    engine = new InferenceEngine({ devices: [d] });
    const g = await engine.loadGraph(model);
    await Promise.all(Array.from({ length: 60 }, (_, i) => engine.submit(g, feeds(i))));
    assert.ok(d.maxRunning <= 3, `max running ${d.maxRunning}`);
  });

  describe('queue policies (capacity 2, device busy)', function () {
    async function setup(policy: 'reject' | 'drop-oldest' | 'drop-newest') {
      const d = new FakeDevice({ id: 'a', serviceMs: 30, maxInFlight: 1 });
      engine = new InferenceEngine({ devices: [d] });
      const g = await engine.loadGraph(model, { queueCapacity: 2, queuePolicy: policy });
      // one running, two queued, the fourth meets a full queue
      const tasks = [0, 1, 2, 3].map((i) => engine.submit(g, feeds(i)));
      return { g, outcome: await Promise.allSettled(tasks) };
    }

    it('reject refuses the newcomer with an error naming the policy', async function () {
      const { g, outcome } = await setup('reject');
      assert.deepEqual(outcome.map((o) => o.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
      const err = (outcome[3] as PromiseRejectedResult).reason;
      assert.ok(err instanceof QueueFullError);
      assert.match(err.message, /^rejected: .*full \(2 waiting; policy reject\)/);
      assert.equal(engine.getStats().graphs[g.id].rejected, 1);
    });

    it('drop-newest drops the newcomer and counts it', async function () {
      const { g, outcome } = await setup('drop-newest');
      assert.deepEqual(outcome.map((o) => o.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
      assert.match((outcome[3] as PromiseRejectedResult).reason.message, /^dropped: /);
      assert.equal(engine.getStats().graphs[g.id].dropped, 1);
    });

    it('drop-oldest drops the oldest waiting task (latest frame wins)', async function () {
      const { g, outcome } = await setup('drop-oldest');
      assert.deepEqual(outcome.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      assert.match((outcome[1] as PromiseRejectedResult).reason.message, /^dropped: .*newer task arrived/);
      assert.equal(engine.getStats().graphs[g.id].dropped, 1);
    });
  });

  it('settles every task exactly once when a device fails at random, retrying on another', async function () {
    const random = mulberry32(42);
    const failures = new Set<number>();
    const flaky = new FakeDevice({
      id: 'flaky',
      serviceMs: 1,
      maxInFlight: 4,
      failWhen: (n) => {
        const fail = random() < 0.4;
        if (fail) failures.add(n);
        return fail;
      },
    });
    const good = new FakeDevice({ id: 'good', serviceMs: 1, maxInFlight: 4, failWhen: () => random() < 0.1 });
    engine = new InferenceEngine({ devices: [flaky, good] });
    const g = await engine.loadGraph(model);
    let settledTwice = 0;
    const promises = Array.from({ length: 400 }, (_, i) => {
      let settled = 0;
      const p = engine.submit(g, feeds(i));
      p.then(
        () => (++settled > 1 ? settledTwice++ : 0),
        () => (++settled > 1 ? settledTwice++ : 0),
      );
      return p;
    });
    const { ok, failed } = await settleAll(promises);
    assert.equal(ok.length + failed.length, 400);
    assert.equal(settledTwice, 0);
    const stats = engine.getStats().graphs[g.id];
    assert.equal(stats.completed, ok.length);
    assert.equal(stats.failed, failed.length);
    assert.ok(stats.retried > 0, 'some tasks were retried');
    assert.ok(ok.some((r) => r.retries === 1 && r.deviceId === 'good'), 'a retried task finished on the other device');
    // a task fails only after both devices failed it
    for (const err of failed) assert.ok(err instanceof DeviceError);
    assert.ok(failed.length < failures.size, `${failed.length} failed of ${failures.size} injected failures`);
  });

  it('loses no task when a device is unplugged mid-run: they finish on the others', async function () {
    const leaving = new FakeDevice({ id: 'leaving', serviceMs: 20, maxInFlight: 4, parallelism: 4 });
    const staying = new FakeDevice({ id: 'staying', serviceMs: 5, maxInFlight: 4, parallelism: 4 });
    engine = new InferenceEngine({ devices: [leaving, staying] });
    const g = await engine.loadGraph(model);
    const promises = Array.from({ length: 60 }, (_, i) => engine.submit(g, feeds(i)));
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(leaving.running > 0, 'the leaving device had work in flight');
    await engine.removeDevice('leaving');
    const { ok, failed } = await settleAll(promises);
    assert.equal(failed.length, 0, failed.map((e) => e.message).join('; '));
    assert.equal(ok.length, 60);
    assert.ok(ok.some((r) => r.retries === 1), 'tasks from the unplugged device were retried');
    ok.forEach((r, i) => assert.equal((r.outputs.output.data as Float32Array)[0], i));
    assert.equal(engine.getStats().deviceCount, 1);
    assert.equal(engine.getStats().devices.leaving.removed, true);
  });

  it('expires a task at its deadline and ignores its late result', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', serviceMs: 60, maxInFlight: 1 })] });
    const g = await engine.loadGraph(model);
    const running = engine.submit(g, feeds(1), { deadlineMs: 20 });
    const queued = engine.submit(g, feeds(2), { deadlineMs: 20 });
    const [a, b] = await Promise.allSettled([running, queued]);
    assert.ok((a as PromiseRejectedResult).reason instanceof DeadlineExceededError);
    assert.match((a as PromiseRejectedResult).reason.message, /was running/);
    assert.match((b as PromiseRejectedResult).reason.message, /still queued/);
    await new Promise((r) => setTimeout(r, 80));
    const stats = engine.getStats().graphs[g.id];
    assert.equal(stats.expired, 2);
    assert.equal(stats.completed, 0);
  });

  it('fails queued tasks with EngineClosedError on close', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', serviceMs: 30, maxInFlight: 1 })] });
    const g = await engine.loadGraph(model);
    const tasks = [1, 2, 3].map((i) => engine.submit(g, feeds(i)));
    await engine.close();
    const outcome = await Promise.allSettled(tasks);
    assert.ok(outcome.every((o) => o.status === 'rejected'));
    assert.ok(outcome.slice(1).every((o) => (o as PromiseRejectedResult).reason instanceof EngineClosedError));
    await assert.rejects(engine.submit(g, feeds(4)), EngineClosedError);
  });

  it('runs a graph only on the devices it is placed on', async function () {
    const a = new FakeDevice({ id: 'a', maxInFlight: 2 });
    const b = new FakeDevice({ id: 'b', maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [a, b] });
    const g = await engine.loadGraph(model, { devices: ['b'] });
    await Promise.all(Array.from({ length: 10 }, (_, i) => engine.submit(g, feeds(i))));
    assert.equal(a.runs, 0);
    assert.equal(b.runs, 10);
    await assert.rejects(engine.loadGraph(buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 4 }), { devices: ['c'] }), /none of the devices c/);
  });

  it('fails tasks at once, with the reason, when no device can run the graph', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', failLoad: true })] });
    await assert.rejects(engine.loadGraph(model), /on any device \(a: fake load failure on a\)/);
    const empty = new InferenceEngine();
    const g: GraphHandle = await empty.loadGraph(model);
    await assert.rejects(empty.submit(g, feeds(1)), /no device can run .*no device is registered/);
    await empty.close();
  });

  it('checks feeds before any device sees them', async function () {
    const d = new FakeDevice({ id: 'a' });
    engine = new InferenceEngine({ devices: [d] });
    const g = await engine.loadGraph(model);
    const f32 = (n: number) => new Float32Array(n);
    const cases: Array<[unknown, RegExp]> = [
      [{}, /missing input 'input': expected float32\[N, 4\]/],
      [{ input: { type: 'float32', dims: [1, 4], data: f32(4) }, extra: {} }, /unexpected input 'extra'; the model's inputs are 'input'/],
      [{ input: { type: 'int32', dims: [1, 4], data: new Int32Array(4) } }, /expected type float32, got int32/],
      [{ input: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } }, /must be a typed array for float32, got an array of 4/],
      [{ input: { type: 'float32', dims: [1, 5], data: f32(5) } }, /dim 1 must be 4 \(float32\[N, 4\]\), got \[1, 5\]/],
      [{ input: { type: 'float32', dims: [4], data: f32(4) } }, /expected 2 dims float32\[N, 4\], got \[4\]/],
      [{ input: { type: 'float32', dims: [2, 4], data: f32(4) } }, /dims \[2, 4\] need 8 elements, data has 4/],
      [{ input: { type: 'float32', dims: [0, 4], data: f32(0) } }, /dims must be positive integers, got \[0,4\]/],
    ];
    for (const [bad, message] of cases) {
      await assert.rejects(engine.submit(g, bad as never), (err: Error) => err instanceof InputError && message.test(err.message));
    }
    assert.equal(d.runs, 0);
    assert.equal(engine.getStats().graphs[g.id].rejected, cases.length);
  });
});

describe('thermal-aware scheduling', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  async function share(e: InferenceEngine, g: GraphHandle, a: FakeDevice, b: FakeDevice, n = 80): Promise<number> {
    const before = a.runs;
    const total = a.runs + b.runs;
    await Promise.all(Array.from({ length: n }, (_, i) => e.submit(g, feeds(i))));
    return (a.runs - before) / (a.runs + b.runs - total);
  }

  it('gives a hot device a smaller share, pauses it at the critical limit, and restores it after cooling', async function () {
    const a = new FakeDevice({ id: 'a', serviceMs: 2, maxInFlight: 2 });
    const b = new FakeDevice({ id: 'b', serviceMs: 2, maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [a, b], thermalIntervalMs: 3_600_000, thermal: { targetC: 70, criticalC: 85, hysteresisC: 5 } });
    const events: Array<{ deviceId: string; state: string }> = [];
    engine.on('thermal', (e) => events.push(e));
    const g = await engine.loadGraph(model);
    a.temperatureC = b.temperatureC = 50;
    engine.checkThermal();
    const cool = await share(engine, g, a, b);
    assert.ok(cool > 0.35 && cool < 0.65, `cool share ${cool}`);

    a.temperatureC = 75;
    engine.checkThermal();
    const hot = await share(engine, g, a, b);
    assert.ok(hot < cool * 0.75, `hot share ${hot} vs cool ${cool}`);
    assert.equal(engine.getStats().devices.a.thermal.state, 'hot');

    a.temperatureC = 90;
    engine.checkThermal();
    assert.equal(await share(engine, g, a, b), 0);

    a.temperatureC = 60;
    engine.checkThermal();
    const back = await share(engine, g, a, b);
    assert.ok(back > 0.35, `share after cooling ${back}`);
    assert.deepEqual(events.filter((e) => e.deviceId === 'a').map((e) => e.state), ['hot', 'critical', 'normal']);
  });

  it('keeps tasks queued, not failed, while the only device is paused hot', async function () {
    const a = new FakeDevice({ id: 'a', serviceMs: 1, maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [a], thermalIntervalMs: 3_600_000 });
    const g = await engine.loadGraph(model);
    a.temperatureC = 95;
    engine.checkThermal();
    const pending = engine.submit(g, feeds(5));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(a.runs, 0);
    assert.equal(engine.getStats().graphs[g.id].queueDepth, 1);
    a.temperatureC = 70;
    engine.checkThermal();
    assert.equal(((await pending).outputs.output.data as Float32Array)[0], 5);
  });
});

describe('dynamic batching', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('coalesces queued tasks into batched runs and gives each task its own rows, in order', async function () {
    const d = new FakeDevice({ id: 'a', serviceMs: 5, maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [d] });
    const g = await engine.loadGraph(model, { batching: { maxBatchSize: 8, adaptive: false, maxDelayMs: 1 } });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => engine.submit(g, feeds(i))));
    results.forEach((r, i) => {
      assert.deepEqual(r.outputs.output.dims, [1, 1]);
      assert.equal((r.outputs.output.data as Float32Array)[0], i);
    });
    assert.ok(Math.max(...d.batchSizes) === 8, `batch sizes ${d.batchSizes}`);
    assert.ok(d.runs < 40 / 2, `${d.runs} runs for 40 tasks`);
    const s = engine.getStats().graphs[g.id].batching;
    assert.equal(s.enabled, true);
    assert.ok(s.avgBatchSize > 2);
    assert.ok(results.some((r) => r.batchSize === 8), 'results say how big a batch carried them');
  });

  it('splits tasks of different shapes into compatible groups instead of failing', async function () {
    const d = new FakeDevice({ id: 'a', serviceMs: 5, maxInFlight: 1 });
    engine = new InferenceEngine({ devices: [d] });
    const g = await engine.loadGraph(model, { batching: { maxBatchSize: 16, adaptive: false, maxDelayMs: 1 } });
    const two = (v: number) => ({ input: { type: 'float32' as const, dims: [2, 4], data: new Float32Array([v, 0, 0, 0, v + 1, 0, 0, 0]) } });
    const tasks = [engine.submit(g, feeds(1)), engine.submit(g, two(10)), engine.submit(g, feeds(2)), engine.submit(g, two(20))];
    const r = await Promise.all(tasks);
    assert.deepEqual(Array.from(r[1].outputs.output.data as Float32Array), [10, 11]);
    assert.deepEqual(Array.from(r[3].outputs.output.data as Float32Array), [20, 21]);
    assert.equal((r[2].outputs.output.data as Float32Array)[0], 2);
  });

  it('runs a model with a fixed batch dimension unbatched and says so', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a' })] });
    const warnings: Error[] = [];
    engine.on('warning', (w: Error) => warnings.push(w));
    const fixed = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 3, batch: 1 });
    const g = await engine.loadGraph(fixed, { batching: true });
    const s = engine.getStats().graphs[g.id].batching;
    assert.equal(s.enabled, false);
    assert.match(s.reason!, /runs unbatched: input 'input' has a fixed batch dimension \(1\)/);
    assert.ok(warnings.some((w) => /fixed batch dimension/.test(w.message)));
    assert.equal(((await engine.submit(g, feeds(3))).outputs.output.data as Float32Array)[0], 3);
  });

  it('grows batches under a backlog, for throughput', async function () {
    const d = new FakeDevice({ id: 'a', serviceMs: 2, maxInFlight: 1 });
    engine = new InferenceEngine({ devices: [d] });
    const g = await engine.loadGraph(model, { queueCapacity: 4000, batching: { maxBatchSize: 32, targetLatencyMs: 2, adaptive: true } });
    await Promise.all(Array.from({ length: 3000 }, (_, i) => engine.submit(g, feeds(i % 7))));
    const s = engine.getStats().graphs[g.id].batching;
    assert.ok(s.cap! > 1, `cap ${s.cap}`);
    assert.ok(Math.max(...d.batchSizes) > 1);
  });
});

describe('batch controller', function () {
  const options = { minBatchSize: 1, maxBatchSize: 32, maxDelayMs: 2, targetLatencyMs: 10, adaptive: true };
  function drive(c: BatchController, clock: { t: number }, latencyMs: number, samples: (cap: number) => number, behind: number, windows = 1) {
    for (let w = 0; w < windows; w++) {
      clock.t += 60;
      for (let i = 0; i < 32; i++) {
        c.onTask(latencyMs);
        c.onBatch(samples(c.cap), behind);
      }
    }
  }

  it('grows with full batches under the target, halves over it, and grows anyway under a backlog', function () {
    const clock = { t: 0 };
    const c = new BatchController(options, () => clock.t);
    drive(c, clock, 3, (cap) => cap, 0, 8);
    const grown = c.cap;
    assert.ok(grown >= 8, `grew to ${grown}`);
    drive(c, clock, 15, (cap) => cap, 0);
    assert.equal(c.cap, Math.floor(grown / 2));
    drive(c, clock, 15, (cap) => cap, 1000, 3);
    assert.ok(c.cap > Math.floor(grown / 2), 'a backlog means more throughput, not smaller batches');
    drive(c, clock, 1, (cap) => cap, 0, 40);
    assert.equal(c.cap, 32, 'never above maxBatchSize');
  });

  it('waits longer for batch-mates only while latency has headroom, never past maxDelayMs', function () {
    const clock = { t: 0 };
    const c = new BatchController(options, () => clock.t);
    drive(c, clock, 1, () => 1, 0, 100);
    assert.ok(c.delayMs > 0 && c.delayMs <= 2, `delay ${c.delayMs}`);
    const before = c.delayMs;
    drive(c, clock, 20, () => 1, 0);
    assert.equal(c.delayMs, before / 2);
  });

  it('a fixed policy always coalesces up to maxBatchSize and waits maxDelayMs', function () {
    const c = new BatchController({ ...options, adaptive: false });
    assert.equal(c.cap, 32);
    assert.equal(c.delayMs, 2);
  });
});

describe('shared devices and graphs (config-node use)', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('replacing a device with a changed spec under the same id keeps it counted and live', async function () {
    engine = new InferenceEngine();
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-x', workers: 1 });
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-x', workers: 2 });
    await new Promise((r) => setTimeout(r, 50)); // the old device closes in the background
    const s = engine.getStats();
    assert.equal(s.deviceCount, 1);
    assert.equal(s.devices['cpu-x'].removed, false);
    assert.equal(engine.getDevice('cpu-x')!.parallelism, 2);
  });

  it('one model placed by two users on different devices: one graph, tasks run where their user says', async function () {
    const a = new FakeDevice({ id: 'a', maxInFlight: 2 });
    const b = new FakeDevice({ id: 'b', maxInFlight: 2 });
    engine = new InferenceEngine({ devices: [a, b] });
    const onA = await engine.loadGraph(model, { devices: ['a'] });
    const onB = await engine.loadGraph(model, { devices: ['b'] });
    assert.equal(onA.id, onB.id, 'one graph, one session per device');
    await new Promise((r) => setTimeout(r, 20)); // loading onto b
    await Promise.all(Array.from({ length: 10 }, (_, i) => engine.submit(onB, feeds(i), { devices: ['b'] })));
    assert.equal(a.runs, 0);
    assert.equal(b.runs, 10);
    assert.deepEqual(Object.keys(engine.getStats().graphs[onA.id].placement).sort(), ['a', 'b']);
  });

  it('gives a pooled tensor back to the pool when its task is refused or dropped', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', serviceMs: 20, maxInFlight: 1 })] });
    const g = await engine.loadGraph(model, { queueCapacity: 1, queuePolicy: 'drop-newest' });
    const pooled = () => {
      const t = engine.allocateTensor('float32', [1, 4]);
      return { input: t };
    };
    const before = engine.pool.getStats();
    const outcomes = await Promise.allSettled([engine.submit(g, pooled()), engine.submit(g, pooled()), engine.submit(g, pooled()), engine.submit(g, { input: { ...pooled().input, dims: [1, 5] } })]);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    const err = (outcomes[2] as PromiseRejectedResult).reason as QueueFullError;
    assert.equal(err.reason, 'dropped');
    const after = engine.pool.getStats();
    // the dropped task's buffer came back and was reused by the invalid task's tensor, which came back too
    assert.equal(after.bufferHits - before.bufferHits, 1);
    assert.equal(after.availableBuffers - before.availableBuffers, 1);
    const spare = engine.allocateTensor('float32', [1, 4]);
    engine.releaseTensor(spare);
    assert.equal(engine.pool.getStats().bufferHits - after.bufferHits, 1);
  });
});

describe('task events', function () {
  it("emits one 'task' event per completed task, with its timings", async function () {
    const engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', maxInFlight: 2 })] });
    try {
      const g = await engine.loadGraph(model, { name: 'tiny' });
      const events: Array<{ graphName: string; deviceId: string; timings: { totalMs: number } }> = [];
      engine.on('task', (e) => events.push(e));
      await Promise.all([1, 2, 3].map((i) => engine.submit(g, feeds(i))));
      assert.equal(events.length, 3);
      assert.ok(events.every((e) => e.graphName === 'tiny' && e.deviceId === 'a' && e.timings.totalMs > 0));
    } finally {
      await engine.close();
    }
  });
});

describe('bounded bookkeeping', function () {
  it('keeps statistics of only the most recently removed devices', async function () {
    const engine = new InferenceEngine();
    try {
      for (let i = 0; i < 20; i++) {
        engine.addDevice(new FakeDevice({ id: `d${i}` }));
        await engine.removeDevice(`d${i}`);
      }
      engine.addDevice(new FakeDevice({ id: 'live' }));
      const ids = Object.keys(engine.getStats().devices);
      assert.equal(ids.length, 9, ids.join(','));
      assert.ok(ids.includes('live') && ids.includes('d19') && !ids.includes('d0'));
    } finally {
      await engine.close();
    }
  });
});
