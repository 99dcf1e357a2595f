import { strict as assert } from 'assert';
import type { DeviceGraph, LoadRequest } from '../../src/engine/devices/device';
import { DeviceError, InputError } from '../../src/engine/errors';
import { buildMlp } from '../../src/engine/graph/builder';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { FakeDevice } from './fake-device';

const model = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 51 });
const feeds = (v: number) => ({ input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array([v, 0, 0, 0]) } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Settles within `ms` or fails the test: a hang shows as a clear failure, not a mocha timeout. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`still pending after ${ms} ms`)))]);
}

/** A device whose loads fail until `broken` is cleared (a bad setting, then fixed). */
class BrokenDevice extends FakeDevice {
  broken = true;
  override async load(request: LoadRequest) {
    if (this.broken) throw new Error(`std::bad_alloc on ${this.id}`);
    return super.load(request);
  }
}

describe('tasks restricted to devices that cannot run them (issue 22, item 8)', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('an empty device list or an unknown id is refused at once, naming the ids, and later tasks run', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a', maxInFlight: 2 })] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    await assert.rejects(within(engine.submit(g, feeds(1), { devices: [] }), 200), (err: Error) => err instanceof InputError && /none of the devices this task may use can run tiny: the list of devices is empty; registered devices: a/.test(err.message));
    await assert.rejects(within(engine.submit(g, feeds(1), { devices: ['cam-stick', 'other'] }), 200), /cam-stick: no device has this id; other: no device has this id; registered devices: a/);
    const results = await within(Promise.all([2, 3].map((i) => engine.submit(g, feeds(i)))), 2000);
    assert.deepEqual(results.map((r) => (r.outputs.output.data as Float32Array)[0]), [2, 3]);
    assert.equal(engine.getStats().graphs[g.id].rejected, 2);
  });

  it('a registered device the graph is not placed on is refused too', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a' }), new FakeDevice({ id: 'b' })] });
    const g = await engine.loadGraph(model, { name: 'tiny', devices: ['a'] });
    await assert.rejects(engine.submit(g, feeds(1), { devices: ['b'] }), /b: tiny is not placed there/);
    await assert.rejects(engine.submit(g, feeds(1), { deviceId: 'b' }), /b: tiny is not placed there/);
    assert.equal((await engine.submit(g, feeds(4), { devices: ['a', 'b'] })).deviceId, 'a');
  });

  it('a queued task whose only device goes away fails, and does not block the tasks behind it', async function () {
    const a = new FakeDevice({ id: 'a', serviceMs: 30, maxInFlight: 1 });
    const b = new FakeDevice({ id: 'b', serviceMs: 5, maxInFlight: 1 });
    engine = new InferenceEngine({ devices: [a, b] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    const running = engine.submit(g, feeds(1), { devices: ['a'] });
    const stuck = engine.submit(g, feeds(2), { devices: ['a'] }); // waits behind the run on a
    const behind = [3, 4].map((i) => engine.submit(g, feeds(i)));
    await engine.removeDevice('a');
    await assert.rejects(within(running, 500), DeviceError);
    await assert.rejects(within(stuck, 500), (err: Error) => err instanceof DeviceError && /none of the devices this task may use can run tiny: a: no device has this id; registered devices: b/.test(err.message));
    const done = await within(Promise.all(behind), 2000);
    assert.ok(done.every((r) => r.deviceId === 'b'));
  });
});

describe('failed graph loads are visible, fail tasks fast, and clear (issue 22, item 5)', function () {
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('a graph that no device could load shows failed with the reason; its waiting tasks fail at once', async function () {
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'a' })] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    assert.equal(engine.getGraph(g.id)!.state, 'ready');
    // the device is replaced by one whose setting breaks every load
    await engine.removeDevice('a');
    const broken = new BrokenDevice({ id: 'a' });
    engine.addDevice(broken);
    assert.equal(engine.getStats().graphs[g.id].state, 'loading');
    const waiting = engine.submit(g, feeds(1), { devices: ['a'] });
    await assert.rejects(within(waiting, 500), /std::bad_alloc on a/);
    const stats = engine.getStats().graphs[g.id];
    assert.equal(stats.state, 'failed');
    assert.match(stats.stateReason!, /could not be loaded \(a: std::bad_alloc on a\)/);
    assert.deepEqual(stats.loadErrors, { a: 'std::bad_alloc on a' });
    const handle = engine.getGraph(g.id)!;
    assert.deepEqual([handle.state, handle.stateReason], [stats.state, stats.stateReason]);
    await assert.rejects(within(engine.submit(g, feeds(2)), 500), /no device can run tiny: it could not be loaded \(a: std::bad_alloc on a\)/);
  });

  it('removing the device forgets its load error; a good device under the same id loads the graph', async function () {
    engine = new InferenceEngine({ devices: [new BrokenDevice({ id: 'a' }), new FakeDevice({ id: 'b' })] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    let stats = engine.getStats().graphs[g.id];
    assert.deepEqual([stats.state, stats.stateReason], ['ready', 'could not be loaded on a: std::bad_alloc on a']);
    await engine.removeDevice('a');
    stats = engine.getStats().graphs[g.id];
    assert.deepEqual([stats.state, stats.stateReason, stats.loadErrors], ['ready', undefined, {}]);
    engine.addDevice(new FakeDevice({ id: 'a' }));
    await sleep(20);
    assert.deepEqual(Object.keys(engine.getStats().graphs[g.id].placement).sort(), ['a', 'b']);
    assert.equal((await engine.submit(g, feeds(5), { deviceId: 'a' })).deviceId, 'a');
  });

  it('loading the graph again retries the devices that failed (a redeploy after the cause is fixed)', async function () {
    const flaky = new BrokenDevice({ id: 'a' });
    engine = new InferenceEngine({ devices: [flaky, new FakeDevice({ id: 'b' })] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    assert.deepEqual(engine.getStats().graphs[g.id].loadErrors, { a: 'std::bad_alloc on a' });
    flaky.broken = false;
    await sleep(20);
    assert.deepEqual(engine.getStats().graphs[g.id].loadErrors, { a: 'std::bad_alloc on a' }, 'a failure sticks until something changes');
    await engine.loadGraph(model, { name: 'tiny' });
    await sleep(20);
    const stats = engine.getStats().graphs[g.id];
    assert.deepEqual([stats.state, stats.stateReason, stats.loadErrors], ['ready', undefined, {}]);
    assert.deepEqual(Object.keys(stats.placement).sort(), ['a', 'b']);
  });

  it('a device replaced while it loads: the old one\'s late result is not taken for the new one', async function () {
    let release!: () => void;
    class SlowLoad extends FakeDevice {
      override async load(): Promise<DeviceGraph> {
        await new Promise<void>((r) => (release = r));
        throw new Error('old device failed late');
      }
    }
    engine = new InferenceEngine({ devices: [new FakeDevice({ id: 'b' })] });
    const g = await engine.loadGraph(model, { name: 'tiny' });
    engine.addDevice(new SlowLoad({ id: 'a' }));
    await sleep(5);
    await engine.removeDevice('a');
    const fresh = new FakeDevice({ id: 'a' });
    engine.addDevice(fresh);
    await sleep(20);
    release();
    await sleep(20);
    const stats = engine.getStats().graphs[g.id];
    assert.deepEqual(stats.loadErrors, {});
    assert.deepEqual(Object.keys(stats.placement).sort(), ['a', 'b']);
  });
});

describe('a device answer the engine cannot hand out', function () {
  it('fails its task with the reason and a warning, instead of an unhandled rejection and a task that never settles', async function () {
    const device = new FakeDevice({ id: 'odd' });
    device.run = async () => ({ outputs: { output: null as never }, inferMs: 1, deviceQueueMs: 0 });
    const engine = new InferenceEngine({ devices: [device] });
    try {
      const warnings: Error[] = [];
      engine.on('warning', (w) => warnings.push(w));
      const g = await engine.loadGraph(model, { name: 'tiny' });
      await assert.rejects(within(engine.submit(g, feeds(1)), 500), /tiny on odd: the result could not be handed out \(.*null.*\)/);
      assert.equal(warnings.length, 1);
      assert.equal(engine.getStats().graphs[g.id].failed, 1);
    } finally {
      await engine.close();
    }
  });
});
