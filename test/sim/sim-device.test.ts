import { strict as assert } from 'assert';
import * as os from 'os';
import { InferenceEngine, type TaskResult } from '../../src/engine/pipeline/engine';
import { SimNcs2Device, type SimNcs2Options } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { bindStickRegistry } from '../../src/engine/devices/usb/engine-binding';
import { createDevice } from '../../src/engine/devices/factory';
import { planThroughput } from '../../src/engine/planner/planner';
import { UsbLink } from '../../src/engine/devices/sim-ncs2/lanes';
import { DEFAULT_TIMING } from '../../src/engine/devices/sim-ncs2/timing';
import { buildMlp } from '../../src/engine/graph/builder';
import type { Feeds } from '../../src/engine/tensor';
import { buildFrameClassifier } from './models';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keeps `outstanding` tasks submitted until stop(); counts completions per device while counting. */
function closedLoop(engine: InferenceEngine, graph: string, feeds: () => Feeds, outstanding: number) {
  let stopped = false;
  let counting = false;
  const perDevice = new Map<string, { n: number; inferMs: number }>();
  const times: number[] = [];
  const errors: Error[] = [];
  const loop = async () => {
    while (!stopped) {
      let r: TaskResult;
      try {
        r = await engine.submit(graph, feeds());
      } catch (err) {
        errors.push(err as Error);
        return;
      }
      if (!counting) continue;
      times.push(performance.now());
      const d = perDevice.get(r.deviceId) ?? { n: 0, inferMs: 0 };
      d.n++;
      d.inferMs += r.timings.inferMs;
      perDevice.set(r.deviceId, d);
    }
  };
  const loops = Array.from({ length: outstanding }, loop);
  return {
    perDevice,
    errors,
    count(on: boolean) {
      counting = on;
      if (on) {
        perDevice.clear();
        times.length = 0;
      }
    },
    /** Completions per second between the first and the last counted one (no window-edge quantization). */
    rate(): number {
      return times.length > 1 ? ((times.length - 1) / (times[times.length - 1] - times[0])) * 1000 : 0;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

describe('simulated NCS2 sticks (paced, real outputs)', function () {
  this.timeout(60_000);

  it('N sticks give >= 0.95 x N x one stick (N = 1..4) on a model the host computes easily; the planner agrees within 10%', async function () {
    // A 640x640 camera frame as uint8 (1.2 MB) per request, each stick on its own USB 2 bus
    // (its own host controller): 20 ms of link time per frame and per stick, against about 1 ms of
    // host CPU per frame (copy, tiny network, hand-offs). That leaves the host idle enough that
    // even while other processes load this machine the sticks, not the host, set the pace. On
    // USB 3 the same frame takes 2.7 ms and four sticks would need most of a core.
    const size = 640;
    const model = buildFrameClassifier(size);
    const frame = new Uint8Array(3 * size * size).map((_, i) => (i * 31) & 255);
    const feeds = (): Feeds => ({ frame: { type: 'uint8', dims: [1, 3, size, size], data: frame } });
    const measure = async (n: number) => {
      const registry = new StickRegistry();
      const sticks = Array.from({ length: n }, (_, i) => new SimNcs2Device({ id: `scale${i}`, registry, usb: 2, bus: new UsbLink(2, DEFAULT_TIMING) }));
      const engine = new InferenceEngine({ devices: sticks });
      try {
        const g = await engine.loadGraph(model);
        const load = closedLoop(engine, g.id, feeds, (sticks[0].maxInFlight + 1) * n);
        await sleep(400);
        const before = sticks.map((s) => s.simStats());
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        load.count(true);
        await sleep(1200);
        load.count(false);
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const fps = load.rate();
        await load.stop();
        assert.deepEqual(load.errors, []);
        const after = sticks.map((s) => s.simStats());
        const late = Math.max(...after.map((a, i) => (a.hostLate - before[i].hostLate) / Math.max(1, a.completed - before[i].completed)));
        const plan = planThroughput(
          { opsPerInference: g.ops.total, inputBytes: 3 * size * size, outputBytes: 10 * 2 },
          { sticks: n, usb: 2, usb2Buses: n, requestsInFlight: sticks[0].maxInFlight * n },
        );
        return { fps, late, hostCores: (cpu.user + cpu.system) / 1000 / ms, plan };
      } finally {
        await engine.close();
      }
    };
    const results: Array<Awaited<ReturnType<typeof measure>>> = [];
    for (let n = 1; n <= 4; n++) {
      // Other processes share this host's cores. A window in which the simulator saw the host late
      // (over 5% of results computed after the stick would have returned them) measured the host,
      // not the sticks: measure again, at most twice.
      let r = await measure(n);
      for (let attempt = 1; attempt < 3 && r.late > 0.05; attempt++) r = await measure(n);
      results.push(r);
    }
    const one = results[0].fps;
    console.log('      sticks  measured/s  per stick  vs N x one  planner/s  error  host late  host cores');
    results.forEach((r, i) => {
      const n = i + 1;
      console.log(`      ${n}       ${r.fps.toFixed(1).padStart(8)}  ${(r.fps / n).toFixed(1).padStart(9)}  ${(r.fps / (n * one)).toFixed(3).padStart(9)}  ${r.plan.throughputFps.toFixed(1).padStart(9)}  ${((r.fps / r.plan.throughputFps - 1) * 100).toFixed(1).padStart(5)}%  ${(r.late * 100).toFixed(1).padStart(8)}%  ${r.hostCores.toFixed(3).padStart(10)}`);
    });
    results.forEach((r, i) => {
      const n = i + 1;
      assert.ok(r.fps >= 0.95 * n * one, `${n} sticks: ${r.fps.toFixed(1)}/s < 0.95 x ${n} x ${one.toFixed(1)}`);
      assert.ok(Math.abs(r.fps / r.plan.throughputFps - 1) <= 0.1, `${n} sticks: measured ${r.fps.toFixed(1)}/s vs planner ${r.plan.throughputFps.toFixed(1)}/s`);
      assert.equal(r.plan.bottleneck, 'usb link', 'each stick is limited by its own link, not by the host');
    });
    // The host is not the limit: at 4 sticks its outputs were ready before the sticks would have
    // returned them, and the process used a small share of one core.
    assert.ok(results[3].late <= 0.1, `host made ${(results[3].late * 100).toFixed(1)}% of results late at 4 sticks`);
    assert.ok(results[3].hostCores < 0.35 * os.availableParallelism(), `host busy ${(results[3].hostCores * 100).toFixed(0)}% of a core at 4 sticks`);
  });

  it('a stick computes 2 requests at a time: 4 in flight nearly double 1 in flight', async function () {
    const registry = new StickRegistry();
    // A slow request overhead keeps the host's share negligible; the executors are what is measured.
    const stick = new SimNcs2Device({ id: 'exec', registry, timing: { requestOverheadMs: 5 } });
    const engine = new InferenceEngine({ devices: [stick] });
    try {
      const g = await engine.loadGraph(buildMlp({ inputSize: 16, hidden: [8], outputSize: 4 }));
      const x = new Float32Array(16).fill(0.25);
      const rate = async (outstanding: number) => {
        const load = closedLoop(engine, g.id, () => ({ input: { type: 'float32', dims: [1, 16], data: x } }), outstanding);
        await sleep(100);
        load.count(true);
        const t0 = performance.now();
        await sleep(600);
        load.count(false);
        const fps = ((load.perDevice.get('exec')?.n ?? 0) / (performance.now() - t0)) * 1000;
        await load.stop();
        return fps;
      };
      const single = await rate(1);
      const four = await rate(4);
      assert.ok(four > 1.6 * single, `1 in flight ${single.toFixed(0)}/s, 4 in flight ${four.toFixed(0)}/s`);
      assert.ok(four < 2 * (1000 / 5) * 1.05, 'never faster than 2 executors allow');
    } finally {
      await engine.close();
    }
  });

  it('a throttling stick has longer service times, loses load share, and gets it back after cooling', async function () {
    const registry = new StickRegistry();
    // Scaled down so the test takes seconds: tau 2 s, and a stick under full load settles at 50 C,
    // below its guards (60 and 65 C), so only the forced temperature throttles it. 80 C is below the
    // engine's default critical limit (85 C): the stick keeps a share, a smaller one.
    const thermal = { timeConstantMs: 2000, riseAtFullDutyC: 20, guard1C: 60, guard2C: 65, hysteresisC: 2 };
    const options: SimNcs2Options = { registry, timing: { requestOverheadMs: 4 }, thermal };
    const hot = new SimNcs2Device({ ...options, id: 'hot' });
    const cool = new SimNcs2Device({ ...options, id: 'cool' });
    const engine = new InferenceEngine({ devices: [hot, cool] });
    try {
      const g = await engine.loadGraph(buildMlp({ inputSize: 16, hidden: [8], outputSize: 4 }));
      const x = new Float32Array(16).fill(0.5);
      const feeds = (): Feeds => ({ input: { type: 'float32', dims: [1, 16], data: x } });
      const phase = async () => {
        const load = closedLoop(engine, g.id, feeds, 12);
        await sleep(80);
        load.count(true);
        await sleep(500);
        load.count(false);
        await load.stop();
        const h = load.perDevice.get('hot')?.n ?? 0;
        const c = load.perDevice.get('cool')?.n ?? 0;
        return h / Math.max(1, h + c);
      };
      /** Mean inferMs of a few requests placed on one stick. */
      const serviceOn = async (deviceId: string) => {
        let sum = 0;
        for (let i = 0; i < 4; i++) sum += (await engine.submit(g, feeds(), { deviceId })).timings.inferMs;
        return sum / 4;
      };
      assert.ok(Math.abs((await serviceOn('hot')) / (await serviceOn('cool')) - 1) < 0.05, 'equal while both are cool');
      hot.forceTemperature(80);
      assert.equal(hot.telemetry().throttleLevel, 2);
      const hotMs = await serviceOn('hot');
      const coolMs = await serviceOn('cool');
      assert.ok(hotMs > 1.5 * coolMs, `throttled ${hotMs.toFixed(2)} ms vs cool ${coolMs.toFixed(2)} ms per request`);
      // The engine sees it hot (temperature and throttle level) and moves work to the cool stick.
      const throttledShare = await phase();
      assert.ok(throttledShare < 0.42, `hot stick kept ${(throttledShare * 100).toFixed(0)}% of the work`);
      const until = performance.now() + 10_000;
      while (hot.telemetry().throttleLevel > 0 && performance.now() < until) await sleep(50);
      assert.equal(hot.telemetry().throttleLevel, 0, `still throttling at ${hot.telemetry().temperatureC.toFixed(1)} C`);
      // The engine reads telemetry periodically (every 500 ms by default): let it see the cool stick.
      await sleep(700);
      const recoveredShare = await phase();
      assert.ok(recoveredShare > 0.44, `after cooling the stick got ${(recoveredShare * 100).toFixed(0)}% back`);
      assert.ok((await serviceOn('hot')) < 1.1 * (await serviceOn('cool')), 'no pauses once cool');
    } finally {
      await engine.close();
    }
  });

  it('unplugging a stick while tasks run loses none of them: they finish on the others (usb detach path)', async function () {
    const registry = new StickRegistry();
    const sticks = [0, 1, 2].map((i) => new SimNcs2Device({ id: `plug${i}`, registry, timing: { requestOverheadMs: 3 } }));
    const engine = new InferenceEngine({ devices: sticks });
    const unbind = bindStickRegistry(registry, engine);
    const detached: string[] = [];
    registry.on('detach', (r) => detached.push(r.path));
    try {
      const g = await engine.loadGraph(buildMlp({ inputSize: 16, hidden: [8], outputSize: 4 }));
      const tasks = Array.from({ length: 90 }, (_, i) =>
        engine.submit(g, { input: { type: 'float32', dims: [1, 16], data: new Float32Array(16).fill(i / 90) } }),
      );
      await sleep(20);
      assert.ok(sticks[1].simStats().requests > 0, 'the stick was busy when pulled');
      sticks[1].simulateUnplug();
      const results = await Promise.all(tasks);
      assert.equal(results.length, 90);
      assert.ok(results.every((r) => r.deviceId !== 'plug1' || r.retries === 0));
      assert.ok(engine.getStats().graphs[g.id].retried > 0, 'tasks running on the pulled stick were retried');
      assert.equal(engine.getDevice('plug1'), undefined, 'removed from the engine');
      assert.deepEqual(detached, [sticks[1].usbPath]);
      assert.ok(!registry.listSticks().some((s) => s.path === sticks[1].usbPath));
      assert.equal(registry.listSticks().length, 2);
      await assert.rejects(sticks[1].run({ graphKey: 'x', inputs: [] }), /unplugged/);
    } finally {
      unbind();
      await engine.close();
    }
  });

  it('says it is simulated everywhere, with its published FP16 peak only, and is made by the factory', async function () {
    const registry = new StickRegistry();
    const stick = new SimNcs2Device({ id: 'facts', registry });
    try {
      assert.equal(stick.info.simulated, true);
      assert.equal(stick.kind, 'sim-ncs2');
      assert.equal(stick.parallelism, 2);
      assert.equal(stick.peakOpsPerSec('fp16'), 1e12);
      assert.equal(stick.peakOpsPerSec('fp32'), undefined);
      assert.equal(stick.peakOpsPerSec('int8'), undefined);
      const t = stick.telemetry();
      assert.equal(t.simulated, true);
      assert.equal(t.throttleLevel, 0);
      assert.ok(t.temperatureC >= 29 && t.temperatureC <= 31, 'a new stick is at ambient');
      const listed = registry.listSticks();
      assert.equal(listed.length, 1);
      assert.equal(listed[0].state, 'simulated');
      assert.equal(listed[0].deviceId, 'facts');
      const port = Number(stick.usbPath.slice('sim-'.length));
      assert.throws(() => new SimNcs2Device({ id: 'other', registry, port }), /port .* is taken by facts/);
    } finally {
      await stick.close();
    }
    assert.equal(registry.listSticks().length, 0, 'closing removes it');
    const made = createDevice({ kind: 'sim-ncs2', id: 'made', usb: 2 });
    try {
      assert.ok(made instanceof SimNcs2Device);
      assert.equal(made.info.usb, 2);
    } finally {
      await made.close();
    }
  });
});
