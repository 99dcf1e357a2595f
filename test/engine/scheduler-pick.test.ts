import { strict as assert } from 'assert';
import { buildMlp } from '../../src/engine/graph/builder';
import { engineParts, makeTask } from './engine-parts';
import { FakeDevice } from './fake-device';

const model = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 11 });

describe('scheduler: picking a device', function () {
  async function twoDevices(a: ConstructorParameters<typeof FakeDevice>[0], b: ConstructorParameters<typeof FakeDevice>[0]) {
    const devices = [new FakeDevice(a), new FakeDevice(b)];
    const parts = engineParts(devices);
    const g = await parts.store.load(model, {});
    return { ...parts, devices, g };
  }

  it('picks the device expected to finish first, from measured service times and runs in flight', async function () {
    const { scheduler, registry, devices, g } = await twoDevices({ id: 'fast', maxInFlight: 8 }, { id: 'slow', maxInFlight: 8 });
    const [fast, slow] = devices;
    scheduler.recordService('fast', g.id, '1|1', 0.2);
    scheduler.recordService('slow', g.id, '1|1', 1);
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'fast');
    // (busy + 1) x service: fast with 5 running expects 1.2 ms, slow with none 1 ms
    for (let i = 0; i < 5; i++) registry.startRun(fast);
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'slow');
    registry.startRun(slow);
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'fast', 'slow with 1 running expects 2 ms');
  });

  it('honours a task\'s device, its allowed devices, and skips a tried device while others remain', async function () {
    const { scheduler, g } = await twoDevices({ id: 'a' }, { id: 'b' });
    scheduler.recordService('a', g.id, '1|1', 1);
    scheduler.recordService('b', g.id, '1|1', 50);
    assert.equal(scheduler.pickDevice(makeTask(g, { deviceId: 'b' }))?.id, 'b');
    assert.equal(scheduler.pickDevice(makeTask(g, { allowed: ['b'] }))?.id, 'b');
    assert.equal(scheduler.pickDevice(makeTask(g, { allowed: [] })), undefined);
    assert.equal(scheduler.pickDevice(makeTask(g, { tried: new Set(['a']) }))?.id, 'b');
    assert.equal(scheduler.pickDevice(makeTask(g, { tried: new Set(['a', 'b']) }))?.id, 'a', 'all tried: any may run it again');
    assert.equal(scheduler.hasOtherDevice(makeTask(g, { tried: new Set(['a']) })), true);
    assert.equal(scheduler.hasOtherDevice(makeTask(g, { tried: new Set(['a']), allowed: ['a'] })), false);
  });

  it('passes over a device that is down while another can run the task, and tries it when none can', async function () {
    const { scheduler, devices, g } = await twoDevices({ id: 'a' }, { id: 'b' });
    const [a, b] = devices;
    scheduler.recordService('a', g.id, '1|1', 1);
    scheduler.recordService('b', g.id, '1|1', 50);
    a.up = false;
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'b', 'the faster device is down');
    assert.equal(scheduler.pickDevice(makeTask(g, { allowed: ['a'] }))?.id, 'a', 'only a may run it: tried, so it fails with its reason');
    b.up = false;
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'a', 'both down: the run is tried rather than left waiting');
    a.up = true;
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'a');
  });

  it('keeps a device under its in-flight limit: two per executor for a slow graph, more for a fast one, never above its cap', async function () {
    const { scheduler, registry, devices, g } = await twoDevices({ id: 'a', maxInFlight: 16, parallelism: 2 }, { id: 'b', maxInFlight: 3 });
    const [a, b] = devices;
    assert.equal(scheduler.inFlightLimit(a, g), 4, 'unmeasured: two per executor');
    scheduler.recordService('a', g.id, '1|1', 0.25);
    assert.equal(scheduler.inFlightLimit(a, g), 16, '8 per executor cover 2 ms, capped at 16');
    scheduler.recordService('b', g.id, '1|1', 0.25);
    assert.equal(scheduler.inFlightLimit(b, g), 3, 'the device cap');
    for (let i = 0; i < 16; i++) registry.startRun(a);
    for (let i = 0; i < 3; i++) registry.startRun(b);
    assert.equal(scheduler.pickDevice(makeTask(g)), undefined, 'both full');
    registry.endRun(b);
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'b');
  });

  it('passes over a paused (critical) device and reads slowdown at equal load', async function () {
    const { scheduler, registry, devices, g } = await twoDevices({ id: 'hot', throttlesSilently: true }, { id: 'cool' });
    scheduler.recordService('hot', g.id, '1|1', 1);
    scheduler.recordService('cool', g.id, '1|1', 30);
    devices[0].temperatureC = 90;
    const { changes } = registry.readThermal((id) => scheduler.slowdown(id));
    assert.deepEqual(changes.map((c) => [c.deviceId, c.previous, c.state]), [['hot', 'normal', 'critical']]);
    assert.equal(scheduler.pickDevice(makeTask(g))?.id, 'cool');
    // 20 settled samples at 1 ms, then the same work takes 4 ms: the device slowed down
    for (let i = 0; i < 25; i++) scheduler.recordService('cool', g.id, '1|1', 1);
    assert.equal(scheduler.slowdown('cool'), 1);
    for (let i = 0; i < 25; i++) scheduler.recordService('cool', g.id, '1|1', 4);
    assert.ok(scheduler.slowdown('cool') > 3, String(scheduler.slowdown('cool')));
  });

  it('forgets service times with their device or graph', async function () {
    const { scheduler, devices, g } = await twoDevices({ id: 'a', maxInFlight: 16 }, { id: 'b', maxInFlight: 16 });
    for (let i = 0; i < 25; i++) scheduler.recordService('a', g.id, '1|1', 0.25);
    assert.equal(scheduler.inFlightLimit(devices[0], g), 8, '8 per executor cover 2 ms');
    scheduler.forgetDevice('a');
    assert.equal(scheduler.inFlightLimit(devices[0], g), 2, 'unmeasured again');
    scheduler.recordService('b', g.id, '1|1', 0.25);
    scheduler.forgetGraph(g.id);
    assert.equal(scheduler.inFlightLimit(devices[1], g), 2);
  });
});
