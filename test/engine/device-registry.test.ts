import { strict as assert } from 'assert';
import { buildMlp } from '../../src/engine/graph/builder';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { DeviceRegistry } from '../../src/engine/pipeline/engine/device-registry';
import { FakeDevice } from './fake-device';

const model = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 31 });
const feeds = (v: number) => ({ input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array([v, 0, 0, 0]) } });

describe('device registry', function () {
  it('detach takes a device out of service and keeps its statistics visible, marked removed', function () {
    const registry = new DeviceRegistry(undefined, () => undefined);
    const device = new FakeDevice({ id: 'a' });
    registry.add(device);
    assert.throws(() => registry.add(new FakeDevice({ id: 'a' })), /a device with id 'a' is already registered/);
    registry.startRun(device);
    assert.equal(registry.detach('a'), device);
    assert.equal(registry.detach('a'), undefined);
    assert.deepEqual([registry.has('a'), registry.size, registry.list().length], [false, 0, 0]);
    const [entry] = [...registry.statsEntries()];
    assert.deepEqual([entry.id, entry.device, entry.stats.snapshot(0, 0).removed], ['a', undefined, true]);
    assert.equal(registry.busyOf(device), 1, 'its run is still out');
    registry.endRun(device);
    registry.closed(device);
    registry.endRun(device); // a late finish after close changes nothing
    assert.equal(registry.busyOf(device), 0);
  });

  it('counts users: the last release removes the device after the idle time, unless it is acquired again', async function () {
    const registry = new DeviceRegistry(undefined, () => undefined);
    const removed: string[] = [];
    const remove = async (id: string) => void removed.push(id);
    registry.add(new FakeDevice({ id: 'a' }));
    registry.holdRef('a', 'spec-1');
    assert.equal(registry.share('a', 'spec-2'), undefined, 'another spec is not shared');
    assert.equal(registry.share('a', 'spec-1')?.id, 'a');
    await registry.releaseRef('a', { idleMs: 10 }, remove);
    await registry.releaseRef('a', { idleMs: 10 }, remove);
    assert.ok(registry.share('a', 'spec-1'), 'acquired again while idle');
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(removed, []);
    await registry.releaseRef('a', { idleMs: 10 }, remove);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(removed, ['a']);
    registry.holdRef('b', 'spec');
    await registry.releaseRef('b', { free: true, idleMs: 60_000 }, remove);
    assert.deepEqual(removed, ['a', 'b']);
  });

  it('reports a failing idle removal as an error instead of throwing from the timer', async function () {
    const errors: Error[] = [];
    const registry = new DeviceRegistry(undefined, (e) => errors.push(e));
    registry.holdRef('a', 'spec');
    await registry.releaseRef('a', { idleMs: 5 }, async () => {
      throw new Error('close failed');
    });
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(errors.map((e) => e.message), ['close failed']);
  });

  it('the engine removing a device clears what every part kept for it; the id can come back fresh', async function () {
    const a = new FakeDevice({ id: 'a', maxInFlight: 4 });
    const b = new FakeDevice({ id: 'b', maxInFlight: 4 });
    const engine = new InferenceEngine({ devices: [a, b] });
    try {
      const g = await engine.loadGraph(model);
      await Promise.all(Array.from({ length: 20 }, (_, i) => engine.submit(g, feeds(i))));
      assert.ok(a.runs > 0 && b.runs > 0);
      assert.equal(engine.getStats().graphCache.size, 2);
      await engine.removeDevice('a');
      let s = engine.getStats();
      assert.equal(s.deviceCount, 1);
      assert.equal(s.devices.a.removed, true);
      assert.deepEqual(Object.keys(s.graphs[g.id].placement), ['b']);
      assert.equal(s.graphCache.size, 1);
      assert.equal(engine.getDevice('a'), undefined);
      await assert.rejects(engine.submit(g, feeds(1), { deviceId: 'a' }), /device 'a' is not registered; expected one of b/);
      const back = new FakeDevice({ id: 'a', maxInFlight: 4 });
      engine.addDevice(back);
      await new Promise((r) => setTimeout(r, 20)); // the graph loads onto it in the background
      s = engine.getStats();
      assert.equal(s.devices.a.removed, false);
      assert.equal(s.devices.a.completedTasks, 0, 'fresh statistics');
      assert.deepEqual(Object.keys(s.graphs[g.id].placement).sort(), ['a', 'b']);
      await engine.submit(g, feeds(2), { deviceId: 'a' });
      assert.equal(back.runs, 1);
    } finally {
      await engine.close();
    }
  });
});
