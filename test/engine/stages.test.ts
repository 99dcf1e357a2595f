import { strict as assert } from 'assert';
import { Stage, chooseStageConcurrency, findBottleneck, tuneStageConcurrency, uvThreadpoolSize, STAGES, TUNE_MIN_SAMPLES, type StageStats, type StageName } from '../../src/engine/pipeline/stages';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { QueueFullError } from '../../src/engine/errors';
import { buildMlp } from '../../src/engine/graph/builder';
import { FakeDevice } from './fake-device';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pipeline stages', function () {
  describe('Stage', function () {
    it('runs at most `concurrency` at once; the rest wait in order and are counted as queued', async function () {
      const stage = new Stage('preprocess', { concurrency: 2, capacity: 10 });
      let active = 0;
      let most = 0;
      const order: number[] = [];
      const runs = Array.from({ length: 6 }, (_, i) =>
        stage.run(async () => {
          active++;
          most = Math.max(most, active);
          await sleep(10);
          active--;
          order.push(i);
          return i;
        }),
      );
      await sleep(1);
      assert.equal(stage.running, 2);
      assert.equal(stage.queued, 4);
      assert.equal(stage.snapshot().queued, 4);
      assert.deepEqual(await Promise.all(runs), [0, 1, 2, 3, 4, 5]);
      assert.equal(most, 2);
      assert.deepEqual(order.slice(0, 2).sort(), [0, 1]);
      const s = stage.snapshot();
      assert.equal(s.completed, 6);
      assert.equal(s.active, 0);
      assert.equal(s.queued, 0);
      assert.ok(s.serviceMs.p50 >= 9 && s.serviceMs.p50 < 60, `service p50 ${s.serviceMs.p50}`);
      // the last two waited for two rounds of ~10 ms
      assert.ok(s.waitMs.maxMs >= 15, `wait max ${s.waitMs.maxMs}`);
    });

    it('a full waiting queue refuses at once with QueueFullError (rejected:), counted', async function () {
      const stage = new Stage('preprocess', { concurrency: 1, capacity: 2 });
      const slow = () => stage.run(() => sleep(20));
      const accepted = [slow(), slow(), slow()];
      await assert.rejects(slow(), (err: Error) => err instanceof QueueFullError && /^rejected: the preprocess stage has 2 requests waiting/.test(err.message));
      await Promise.all(accepted);
      const s = stage.snapshot();
      assert.equal(s.rejected, 1);
      assert.equal(s.completed, 3);
    });

    it('a failing request frees its slot: the ones behind it run, and the failure is counted', async function () {
      const stage = new Stage('preprocess', { concurrency: 1, capacity: 10 });
      const bad = stage.run(async () => {
        await sleep(5);
        throw new Error('corrupt');
      });
      const good = [1, 2, 3].map((i) => stage.run(async () => i));
      await assert.rejects(bad, /corrupt/);
      assert.deepEqual(await Promise.all(good), [1, 2, 3]);
      const s = stage.snapshot();
      assert.equal(s.failed, 1);
      assert.equal(s.completed, 3);
    });

    it('setConcurrency starts waiting requests when slots are added', async function () {
      const stage = new Stage('preprocess', { concurrency: 1 });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const first = stage.run(() => gate);
      const second = stage.run(async () => 'second');
      await sleep(1);
      assert.equal(stage.queued, 1);
      stage.setConcurrency(2);
      assert.equal(await second, 'second');
      release();
      await first;
    });
  });

  it('the bottleneck is the present stage with the highest busy share; absent stages never are', function () {
    const row = (stage: StageName, busyShare: number, present = true, queued = 0): StageStats => ({
      stage,
      present,
      concurrency: 1,
      active: 0,
      queued,
      capacity: null,
      completed: 1,
      failed: 0,
      rejected: 0,
      busyShare,
      serviceMs: { count: 1, meanMs: 1, minMs: 1, p50: 1, p95: 1, p99: 1, maxMs: 1 },
      waitMs: { count: 1, meanMs: 0, minMs: 0, p50: 0, p95: 0, p99: 0, maxMs: 0 },
    });
    const stages = Object.fromEntries(STAGES.map((n) => [n, row(n, 0.1)])) as Record<StageName, StageStats>;
    stages.infer = row('infer', 0.6);
    stages.toDevice = row('toDevice', 0.9, false);
    stages.preprocess = row('preprocess', 0.8, true, 3);
    const b = findBottleneck(stages)!;
    assert.equal(b.stage, 'preprocess');
    assert.match(b.reason, /preprocess kept 80% of its 1 slot busy .* with 3 waiting/);
    for (const n of STAGES) stages[n] = row(n, 0);
    assert.equal(findBottleneck(stages), null);
  });

  it('preprocess concurrency: min(libuv threadpool, cores), with its inputs shown', function () {
    assert.equal(chooseStageConcurrency(2, 2, 4, 2).preprocess, 2);
    const c = chooseStageConcurrency(8, 16, 4, 16);
    assert.equal(c.preprocess, 4);
    assert.match(c.reason, /libuv's threadpool \(4\)/);
    assert.deepEqual({ cores: c.cores, uv: c.uvThreadpoolSize, sharp: c.sharpThreadsPerImage, inf: c.inferenceThreads, post: c.postprocess }, { cores: 16, uv: 4, sharp: 16, inf: 8, post: 1 });
    assert.equal(chooseStageConcurrency(1, 1, 4, 1).preprocess, 1);
    assert.equal(uvThreadpoolSize({ UV_THREADPOOL_SIZE: '8' }), 8);
    assert.equal(uvThreadpoolSize({}), 4);
    assert.equal(uvThreadpoolSize({ UV_THREADPOOL_SIZE: 'x' }), 4);
  });

  it('measured tuning: slots = devices rate x decode time (Little), +25%, within the host cap', function () {
    const base = chooseStageConcurrency(8, 8, 8, 1); // cap 8
    // a big model: the devices take 40/s, a decode takes 11 ms -> 0.44 in flight: one slot does
    const slow = tuneStageConcurrency(base, 40, 11);
    assert.equal(slow.preprocess, 1);
    assert.ok(Math.abs(slow.measured!.needed - 0.44) < 1e-9);
    assert.match(slow.reason, /^1 decode at once: the devices take 40\.0 requests\/s and a decode takes 11\.0 ms \(p50\), so 0\.44 in flight feed them/);
    // 400/s x 11 ms = 4.4 -> ceil(5.5) = 6
    assert.equal(tuneStageConcurrency(base, 400, 11).preprocess, 6);
    // fast devices: the need exceeds the cap, which says what it is
    const capped = tuneStageConcurrency(base, 2000, 11);
    assert.equal(capped.preprocess, 8);
    assert.match(capped.reason, /capped by the 8 cores/);
    // nothing measured: unchanged
    assert.equal(tuneStageConcurrency(base, 0, 11), base);
  });

  describe('service time figures', function () {
    it('the mean is exact (not the histogram bucket midpoints) and the median comes without a full snapshot', function () {
      const stage = new Stage('infer', { concurrency: 1 });
      for (const ms of [1.0004, 2, 3.5, 100.25]) stage.record(ms, 0);
      const snap = stage.snapshot();
      assert.equal(snap.serviceMs.meanMs, (1.0004 + 2 + 3.5 + 100.25) / 4);
      assert.deepEqual(stage.serviceMedian(), { p50: snap.serviceMs.p50, count: 4 });
      assert.ok(Math.abs(snap.serviceMs.p50 - 2) < 0.01, `median ${snap.serviceMs.p50}`);
      stage.reset();
      assert.equal(stage.snapshot().serviceMs.meanMs, 0);
      stage.record(4, 0);
      assert.equal(stage.snapshot().serviceMs.meanMs, 4, 'reset forgets the old sum');
    });
  });

  describe('in the engine', function () {
    let engine: InferenceEngine;
    afterEach(async function () {
      await engine?.close();
    });

    it('stages of different requests overlap: K requests with a slow preprocess and a slow infer take well under the sum', async function () {
      const device = new FakeDevice({ id: 'slow', serviceMs: 40, parallelism: 1, maxInFlight: 1 });
      engine = new InferenceEngine({ devices: [device] });
      engine.setStageConcurrency('preprocess', 1, 'test: one decode at a time');
      const g = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [], outputSize: 2 }));
      const K = 6;
      const request = async (i: number) => {
        const feeds = await engine.preprocess(async () => {
          await sleep(40);
          return { input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array([i, 0, 0, 0]) } };
        });
        const r = await engine.submit(g, feeds);
        return engine.postprocess(() => (r.outputs.output.data as Float32Array)[0]);
      };
      const t0 = performance.now();
      const out = await Promise.all(Array.from({ length: K }, (_, i) => request(i)));
      const total = performance.now() - t0;
      assert.deepEqual(out, [0, 1, 2, 3, 4, 5]);
      const sum = K * (40 + 40);
      // pipelined: about (K + 1) x 40 = 280 ms; one at a time: 480 ms
      assert.ok(total < 0.75 * sum, `total ${total.toFixed(0)} ms vs sum of stages ${sum} ms`);
      assert.ok(total >= K * 40 - 5, `cannot beat the slowest stage: ${total.toFixed(0)} ms`);

      const p = engine.getStats().pipeline;
      assert.equal(p.stages.preprocess.completed, K);
      assert.equal(p.stages.preprocess.concurrency, 1);
      assert.ok(p.stages.preprocess.serviceMs.p50 >= 38, `preprocess p50 ${p.stages.preprocess.serviceMs.p50}`);
      assert.ok(p.stages.preprocess.waitMs.maxMs >= 150, 'the last request waited for five decodes');
      assert.equal(p.stages.infer.completed, K);
      assert.equal(p.stages.infer.concurrency, 1);
      assert.ok(p.stages.infer.serviceMs.p50 >= 39 && p.stages.infer.serviceMs.p50 <= 41);
      assert.equal(p.stages.postprocess.completed, K);
      assert.equal(p.stages.toDevice.present, false, 'a device without a link has no transfer stage');
      assert.equal(p.stages.toDevice.completed, 0);
      assert.ok(p.stages.preprocess.busyShare > 0 && p.stages.infer.busyShare > 0);
      assert.ok(p.bottleneck && ['preprocess', 'infer'].includes(p.bottleneck.stage), JSON.stringify(p.bottleneck));
      assert.equal(p.concurrency.fixed, true);
      assert.equal(p.concurrency.reason, 'test: one decode at a time');
      const d = engine.getStats().devices.slow;
      assert.deepEqual(Object.keys(d.queueDepths).sort(), ['fromDevice', 'inference', 'postprocessing', 'preprocessing', 'toDevice']);
      // no link: the bytes are the tensors handed over, 4 float32 in and 1 out per request
      assert.equal(d.transfer.link, 'none');
      assert.equal(d.transfer.bytesInPerSample, 16);
      assert.equal(d.transfer.bytesOutPerSample, 4);
      assert.equal(d.transfer.bandwidthUtilization, null);
    });

    it('tunes the preprocess slots from measured stage times once both have samples, unless set by hand', async function () {
      const device = new FakeDevice({ id: 'big-model', serviceMs: 50, parallelism: 1, maxInFlight: 2 });
      engine = new InferenceEngine({ devices: [device] });
      const g = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [], outputSize: 2 }));
      const before = engine.getStats().pipeline.concurrency;
      assert.equal(before.preprocess, before.cap);
      engine.tuneStages();
      assert.equal(engine.getStats().pipeline.concurrency.measured, undefined, 'no samples yet: nothing changes');
      const feeds = () => ({ input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array(4) } });
      await Promise.all(
        Array.from({ length: TUNE_MIN_SAMPLES }, async () => {
          const f = await engine.preprocess(async () => {
            await sleep(5);
            return feeds();
          });
          await engine.submit(g, f);
        }),
      );
      engine.tuneStages();
      const c = engine.getStats().pipeline.concurrency;
      // the device takes 1000 / 50 = 20/s; a decode holds ~5 ms: 0.1 in flight -> 1 slot
      assert.equal(c.preprocess, 1);
      assert.ok(c.measured && Math.abs(c.measured.inferPerSec - 20) < 1, JSON.stringify(c.measured));
      assert.equal(engine.getStats().pipeline.stages.preprocess.concurrency, 1);
      engine.setStageConcurrency('preprocess', 3);
      engine.tuneStages();
      assert.equal(engine.getStats().pipeline.concurrency.preprocess, 3, 'set by hand: not tuned');
    });

    it('queue depths per stage are live: preprocess waiting and inference queued show while requests are held', async function () {
      const device = new FakeDevice({ id: 'held', serviceMs: 60, parallelism: 1, maxInFlight: 1 });
      engine = new InferenceEngine({ devices: [device] });
      engine.setStageConcurrency('preprocess', 1);
      const g = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [], outputSize: 2 }));
      const feeds = () => ({ input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array(4) } });
      const inferred = [engine.submit(g, feeds()), engine.submit(g, feeds()), engine.submit(g, feeds())];
      const prepared = [0, 1, 2].map(() => engine.preprocess(() => sleep(30)));
      await sleep(5);
      const s = engine.getStats();
      assert.equal(s.pipeline.stages.preprocess.active, 1);
      assert.equal(s.pipeline.stages.preprocess.queued, 2);
      assert.equal(s.pipeline.stages.infer.active, 1);
      assert.equal(s.pipeline.stages.infer.queued, 2);
      assert.equal(s.devices.held.queueDepths.preprocessing, 2);
      assert.equal(s.devices.held.queueDepths.inference, 2);
      await Promise.all([...inferred, ...prepared]);
      engine.resetStats();
      assert.equal(engine.getStats().pipeline.stages.preprocess.completed, 0);
    });
  });
});
