import { strict as assert } from 'assert';
import { EngineError } from '../../src/engine/errors';
import { buildMlp } from '../../src/engine/graph/builder';
import { InferenceEngine, type EngineEvents, type TaskEvent, type ThermalEvent } from '../../src/engine/pipeline/engine';
import { PeriodicJobs, guarded } from '../../src/engine/pipeline/engine/periodic';
import { FakeDevice } from './fake-device';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('periodic jobs and guarded callbacks', function () {
  it('guarded reports a throw and a rejection instead of letting them escape', async function () {
    const errors: string[] = [];
    guarded(() => {
      throw new Error('thrown');
    }, (e) => errors.push(e.message))();
    guarded(async () => {
      throw new Error('rejected');
    }, (e) => errors.push(e.message))();
    guarded(() => {
      throw 'a string';
    }, (e) => errors.push(e.message))();
    await sleep(0);
    assert.deepEqual(errors, ['thrown', 'a string', 'rejected']);
  });

  it('runs every job on each tick; a failing job is reported by name and the others still run', async function () {
    const reports: string[] = [];
    const jobs = new PeriodicJobs(5, (name, err) => reports.push(`${name}: ${err.message}`));
    let ran = 0;
    jobs.add('broken', () => {
      throw new Error('boom');
    });
    jobs.add('counter', () => void ran++);
    await sleep(40);
    jobs.stop();
    const after = ran;
    await sleep(20);
    assert.ok(after >= 2, `ran ${after} times`);
    assert.equal(ran, after, 'stopped');
    assert.ok(reports.length >= 2 && reports.every((r) => r === 'broken: boom'), reports.join('; '));
  });

  it("the engine turns a throwing thermal check into a 'warning' and keeps running", async function () {
    const device = new FakeDevice({ id: 'flaky' });
    device.telemetry = () => {
      throw new Error('sensor unreadable');
    };
    const engine = new InferenceEngine({ devices: [device], thermalIntervalMs: 5 });
    try {
      const warnings: Error[] = [];
      engine.on('warning', (w) => warnings.push(w));
      await sleep(40);
      assert.ok(warnings.length >= 2, `${warnings.length} warnings`);
      const w = warnings[0] as EngineError;
      assert.equal(w.code, 'PERIODIC_JOB_FAILED');
      assert.match(w.message, /periodic thermal check failed: sensor unreadable/);
      const g = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 41 }));
      const r = await engine.submit(g, { input: { type: 'float32', dims: [1, 4], data: new Float32Array([2, 0, 0, 0]) } });
      assert.equal((r.outputs.output.data as Float32Array)[0], 2);
    } finally {
      await engine.close();
    }
  });
});

describe('typed engine events', function () {
  it('listeners get typed payloads, and an unknown event name does not compile', async function () {
    const device = new FakeDevice({ id: 'a' });
    const engine = new InferenceEngine({ devices: [device] });
    try {
      const seen: Array<keyof EngineEvents> = [];
      const onTask = (e: TaskEvent) => void seen.push(e.timings.totalMs > 0 ? 'task' : 'warning');
      const onThermal = (e: ThermalEvent) => void seen.push(e.previous === 'normal' && e.state === 'critical' ? 'thermal' : 'warning');
      engine.on('task', onTask);
      engine.on('thermal', onThermal);
      engine.on('devices', () => void seen.push('devices'));
      // @ts-expect-error: not an engine event
      engine.on('tasks', () => undefined);
      // @ts-expect-error: a task listener does not take a thermal event
      engine.on('task', (e: ThermalEvent) => e);
      const g = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 42 }));
      await engine.submit(g, { input: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } });
      device.temperatureC = 95;
      engine.checkThermal();
      engine.addDevice(new FakeDevice({ id: 'b' }));
      engine.off('task', onTask);
      await engine.submit(g, { input: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } }, { deviceId: 'b' });
      assert.deepEqual(seen, ['task', 'thermal', 'devices']);
    } finally {
      await engine.close();
    }
  });
});
