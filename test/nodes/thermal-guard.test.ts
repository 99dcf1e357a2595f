import { strict as assert } from 'assert';
import { closeEngine, getEngine } from '../../src/engine/pipeline/singleton';
import { buildMlp } from '../../src/engine/graph/builder';
import type { TaskResult } from '../../src/engine/pipeline/engine';
import thermalNode = require('../../nodes/ncs2-thermal-guard');
import { parseThermalSettings } from '../../nodes/lib/settings';
import type { NodeMessage, NodeStatus } from '../../nodes/lib/red';
import { FakeDevice } from '../engine/fake-device';
import { TAB, collect, helper, node, settle, statuses, waitFor } from './support';

function guardFlow(settings: Record<string, unknown> = {}): object[] {
  return [
    { id: TAB, type: 'tab', label: 'test' },
    { id: 'guard', type: 'ncs2-thermal-guard', z: TAB, x: 100, y: 100, targetC: 70, criticalC: 85, hysteresisC: 5, action: 'pause', interval: 0, ...settings, wires: [['states'], ['readings']] },
    { id: 'states', type: 'helper', z: TAB, x: 300, y: 80 },
    { id: 'readings', type: 'helper', z: TAB, x: 300, y: 120 },
  ];
}

const model = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 11 });
const feeds = () => ({ input: { type: 'float32' as const, dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } });

describe('ncs2-thermal-guard (node-red-node-test-helper)', function () {
  this.timeout(30000);
  let hot: FakeDevice;

  beforeEach(function (done) {
    hot = new FakeDevice({ id: 'hot', serviceMs: 1 });
    getEngine().addDevice(hot);
    helper.startServer(done);
  });

  afterEach(async function () {
    await helper.unload();
    await closeEngine();
    await new Promise<void>((resolve, reject) => helper.stopServer((err) => (err ? reject(err) : resolve())));
  });

  it('sends readings per device on input (null without a sensor) and shows the hottest device', async function () {
    await helper.load([thermalNode], guardFlow());
    const readings = collect('readings');
    const seen: NodeStatus[] = statuses('guard');
    node('guard').receive({});
    await waitFor(() => readings.length === 1, 'a reading');
    assert.deepEqual(readings[0].payload, { deviceId: 'hot', temperatureC: null, state: 'normal', simulated: false });
    assert.equal(readings[0].topic, 'thermal/hot');
    await waitFor(() => seen.some((s) => s.text === 'no sensor'), 'a no-sensor status');
    hot.temperatureC = 61.4;
    node('guard').receive({});
    await waitFor(() => readings.length === 2, 'a second reading');
    assert.equal((readings[1].payload as { temperatureC: number }).temperatureC, 61.4);
    await waitFor(() => seen.some((s) => s.text === '61 C hot' && s.fill === 'green'), 'the hottest device in the status');
  });

  it('sends periodic readings at the interval', async function () {
    await helper.load([thermalNode], guardFlow({ interval: 0.05 }));
    const readings = collect('readings');
    await waitFor(() => readings.length >= 3, 'three periodic readings');
  });

  it('emits a message on each state change (with hysteresis) and pause stops scheduling to a critical device', async function () {
    await helper.load([thermalNode], guardFlow({ action: 'pause' }));
    const engine = getEngine();
    const states = collect('states');
    const seen = statuses('guard');
    const graph = await engine.loadGraph(model, { devices: ['hot'] });

    hot.temperatureC = 75;
    engine.checkThermal();
    await waitFor(() => states.length === 1, 'the hot state');
    assert.equal(states[0].topic, 'thermal');
    assert.deepEqual({ ...(states[0].payload as object), reason: undefined }, { deviceId: 'hot', state: 'hot', previous: 'normal', temperatureC: 75, reason: undefined });
    assert.match((states[0].payload as { reason: string }).reason, /75.0 C above the target 70 C/);

    hot.temperatureC = 90;
    engine.checkThermal();
    await waitFor(() => states.length === 2, 'the critical state');
    assert.deepEqual([(states[1].payload as NodeMessage).state, (states[1].payload as NodeMessage).previous], ['critical', 'hot']);
    await waitFor(() => seen.some((s) => s.fill === 'red' && s.text === '90 C hot'), 'a red status');

    // Paused: a task waits rather than running on the critical device.
    const runsBefore = hot.runs;
    let result: TaskResult | undefined;
    const pending = engine.submit(graph, feeds()).then((r) => (result = r));
    await settle(150);
    assert.equal(hot.runs, runsBefore, 'no run on a paused device');
    assert.equal(result, undefined);

    // 82 C is below critical but within the hysteresis: still paused.
    hot.temperatureC = 82;
    engine.checkThermal();
    await settle(100);
    assert.equal(states.length, 2);
    assert.equal(hot.runs, runsBefore);

    hot.temperatureC = 60;
    engine.checkThermal();
    await pending;
    assert.equal(hot.runs, runsBefore + 1);
    await waitFor(() => states.length === 3, 'back to normal');
    assert.deepEqual([(states[2].payload as NodeMessage).state, (states[2].payload as NodeMessage).previous], ['normal', 'critical']);
    await engine.releaseGraph(graph, { free: true });
  });

  it('alert only reports the state but never pauses or sheds', async function () {
    await helper.load([thermalNode], guardFlow({ action: 'alert' }));
    const engine = getEngine();
    const states = collect('states');
    const graph = await engine.loadGraph(model, { devices: ['hot'] });
    hot.temperatureC = 95;
    engine.checkThermal();
    await waitFor(() => states.length === 1, 'a state change');
    assert.equal((states[0].payload as NodeMessage).state, 'hot');
    const runsBefore = hot.runs;
    await engine.submit(graph, feeds());
    assert.equal(hot.runs, runsBefore + 1);
    await engine.releaseGraph(graph, { free: true });
  });

  it('applies its limits to devices added later and removes its listeners and limits on close', async function () {
    const engine = getEngine();
    const listeners = { thermal: engine.listenerCount('thermal'), devices: engine.listenerCount('devices') };
    await helper.load([thermalNode], guardFlow({ action: 'pause', targetC: 50, criticalC: 60 }));
    const states = collect('states');
    assert.equal(engine.listenerCount('thermal'), listeners.thermal + 1);
    const late = new FakeDevice({ id: 'late' });
    engine.addDevice(late);
    late.temperatureC = 65;
    engine.checkThermal();
    await waitFor(() => states.some((m) => (m.payload as NodeMessage).deviceId === 'late'), 'a state change of the late device');
    assert.equal(engine.thermalState('late')!.state, 'critical');
    await helper.unload();
    assert.deepEqual({ thermal: engine.listenerCount('thermal'), devices: engine.listenerCount('devices') }, listeners);
    // Back to the engine's defaults (critical at 85 C): 65 C is normal again.
    engine.checkThermal();
    assert.equal(engine.thermalState('late')!.state, 'normal');
  });

  it('two guards combine to the strictest limits; removing one leaves the other in force', async function () {
    const engine = getEngine();
    const lenient = { id: 'guard2', type: 'ncs2-thermal-guard', z: TAB, x: 100, y: 200, targetC: 80, criticalC: 95, hysteresisC: 2, action: 'alert', interval: 0, wires: [[], []] };
    const strict = guardFlow({ action: 'pause', targetC: 50, criticalC: 60 });
    await helper.load([thermalNode], [...strict, lenient]);
    // The alert guard deployed next to it does not lift the pause guard's limits, whichever starts last.
    hot.temperatureC = 65;
    engine.checkThermal();
    assert.equal(engine.thermalState('hot')!.state, 'critical');

    // Only the lenient alert guard left: 65 C is below its target of 80 C.
    await helper.setFlows([strict[0], lenient]);
    engine.checkThermal();
    assert.equal(engine.thermalState('hot')!.state, 'normal');
    hot.temperatureC = 99;
    engine.checkThermal();
    assert.equal(engine.thermalState('hot')!.state, 'hot', 'alert never marks a device critical');
  });

  it('refuses a critical temperature at or below the target', function () {
    assert.throws(() => parseThermalSettings({ targetC: 80, criticalC: 80 }), /critical temperature \(80 C\) must be above the target \(80 C\)/);
    assert.deepEqual(parseThermalSettings({}), { targetC: 70, criticalC: 85, hysteresisC: 5, action: 'shed', intervalMs: 10000 });
  });
});
