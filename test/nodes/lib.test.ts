import { strict as assert } from 'assert';
import * as path from 'path';
import * as fs from 'fs';
import * as os from 'os';
import { EventEmitter } from 'events';
import { InferenceEngine, buildMlp, ConfigError, ModelLoadError } from '../../src/engine';
import { DeviceLease } from '../../nodes/lib/device-lease';
import { GraphLease, type GraphState } from '../../nodes/lib/graph-lease';
import { InferController } from '../../nodes/lib/infer-controller';
import { DEFAULT_LABELS, DEFAULT_MODEL, PACKAGE_ROOT, resolveConfigPath } from '../../nodes/lib/paths';
import { parseDeviceSettings, parseGraphSettings } from '../../nodes/lib/settings';
import { parsePoolSettings } from '../../nodes/lib/pool';
import { StatusMeter } from '../../nodes/lib/status-meter';
import { WaitingQueue } from '../../nodes/lib/waiting-queue';
import { wrapError } from '../../nodes/lib/wrap-error';
import type { NodeStatus } from '../../nodes/lib/red';
import { ROOT } from './support';

const WORDS = { loading: 'loading', ready: 'ready', failed: 'failed', dropped: 'dropped' };
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Records what the leases take from and give back to the engine; releases wait until the test lets them finish. */
function fakeEngine() {
  const calls: string[] = [];
  const graphReleases: Array<() => void> = [];
  const info = { inputs: [{ name: 'image', type: 'float32', dims: ['N', 1, 28, 28] }], outputs: [{ name: 'logits', type: 'float32', dims: ['N', 10] }] };
  // An EventEmitter like the engine, so the leases can listen for its 'warning' events.
  const engine = Object.assign(new EventEmitter(), {
    batchCap: (h: { id: string }) => (h.id === 'g' ? 8 : undefined),
    acquireDevice: (spec: { id: string }) => calls.push(`acquireDevice ${spec.id}`),
    releaseDevice: (id: string, o: { free?: boolean }) => {
      calls.push(`releaseDevice ${id} free=${o.free}`);
      return Promise.resolve();
    },
    loadGraph: async (_model: unknown, o: { devices: string[] }) => {
      calls.push('loadGraph');
      return { id: 'g', name: 'g', info, ops: {}, state: 'ready', loadedOn: o.devices };
    },
    releaseGraph: (_h: unknown, o: { free?: boolean }) => {
      calls.push(`releaseGraph free=${o.free}`);
      const d = deferred();
      graphReleases.push(d.resolve);
      return d.promise;
    },
  });
  return { engine: engine as unknown as InferenceEngine, calls, graphReleases };
}

function user() {
  const states: GraphState[] = [];
  const warnings: string[] = [];
  return { states, warnings, graphState: (s: GraphState) => states.push(s), warn: (m: string) => warnings.push(m) };
}

const log = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('nodes/lib (node helpers without Node-RED)', function () {
  describe('WaitingQueue', function () {
    it('applies reject, drop-newest and drop-oldest at capacity', function () {
      const reject = new WaitingQueue<number>(2, 'reject');
      assert.deepEqual([reject.offer(1), reject.offer(2), reject.offer(3)], [{ outcome: 'queued' }, { outcome: 'queued' }, { outcome: 'rejected', item: 3 }]);
      const newest = new WaitingQueue<number>(1, 'drop-newest');
      newest.offer(1);
      assert.deepEqual(newest.offer(2), { outcome: 'dropped', item: 2 });
      assert.deepEqual(newest.takeAll(), [1]);
      const oldest = new WaitingQueue<number>(2, 'drop-oldest');
      oldest.offer(1);
      oldest.offer(2);
      assert.deepEqual(oldest.offer(3), { outcome: 'dropped', item: 1 });
      assert.deepEqual(oldest.takeAll(), [2, 3]);
      assert.equal(oldest.length, 0);
    });
  });

  describe('StatusMeter', function () {
    it('updates on its timer, not per message, and stops updating once stopped', async function () {
      const shown: NodeStatus[] = [];
      const meter = new StatusMeter({ status: (s) => shown.push(s), warnDrops: () => undefined, words: WORDS, intervalMs: 20 });
      meter.start();
      meter.setState('ready', 'cpu');
      for (let i = 0; i < 5000; i++) meter.completed();
      await pause(70);
      meter.stop();
      const count = shown.length;
      assert.ok(count <= 6, `${count} status updates for 5000 messages`);
      assert.ok(shown.some((s) => s.shape === 'dot' && /\/s · cpu$/.test(s.text ?? '')), JSON.stringify(shown));
      for (let i = 0; i < 100; i++) meter.completed();
      meter.dropped();
      await pause(60);
      assert.equal(shown.length, count, 'no update after stop');
    });

    it('warns about drops at most once per period', async function () {
      const warnings: number[] = [];
      const meter = new StatusMeter({ status: () => undefined, warnDrops: (n) => warnings.push(n), words: WORDS, intervalMs: 10, warnEveryMs: 60_000 });
      meter.start();
      meter.setState('ready', 'cpu');
      meter.dropped();
      meter.dropped();
      await pause(40);
      meter.dropped();
      await pause(40);
      meter.stop();
      assert.deepEqual(warnings, [2]);
      assert.equal(meter.droppedCount, 3);
    });
  });

  describe('settings', function () {
    it('reads device settings with blanks as engine defaults', function () {
      assert.deepEqual(parseDeviceSettings({ kind: 'cpu', workers: '2', threadsPerWorker: 'auto', maxInFlight: '', queueCapacity: '16', queuePolicy: 'drop-oldest' }), {
        kind: 'cpu',
        workers: 2,
        threadsPerWorker: undefined,
        maxInFlight: undefined,
        usb: undefined,
        queueCapacity: 16,
        queuePolicy: 'drop-oldest',
      });
      assert.equal(parseDeviceSettings({ kind: 'sim-ncs2', usb: '2' }).usb, 2);
      assert.equal(parseDeviceSettings({ kind: 'sim-ncs2' }).usb, 3);
      assert.throws(() => parseDeviceSettings({ kind: 'sim-ncs2', usb: '4' }), /USB generation must be one of 2, 3, got "4"/);
      assert.throws(() => parseDeviceSettings({ workers: '0' }), /workers must be an integer >= 1 or blank, got "0"/);
      assert.throws(() => parseDeviceSettings({ kind: 'gpu' }), /device kind must be one of cpu, sim-ncs2, got "gpu"/);
      assert.throws(() => parseDeviceSettings({ queuePolicy: 'fifo' }), /queue policy must be one of reject, drop-oldest, drop-newest/);
    });

    it('reads graph settings: fractions, per-channel lists, the built-in model and its labels', function () {
      const s = parseGraphSettings({ model: '', scale: '1/255', mean: '0.485, 0.456, 0.406', std: '0.5', channels: 'auto', layout: 'NHWC', resize: 'letterbox', padValue: '114' }, undefined);
      assert.equal(s.modelPath, DEFAULT_MODEL);
      assert.equal(s.labelsPath, DEFAULT_LABELS);
      assert.equal(s.preprocess.scale, 1 / 255);
      assert.deepEqual(s.preprocess.mean, [0.485, 0.456, 0.406]);
      assert.equal(s.preprocess.std, 0.5);
      assert.equal(s.preprocess.channels, undefined);
      assert.equal(s.preprocess.layout, 'NHWC');
      assert.equal(s.preprocess.padValue, 114);
      assert.equal(s.preset, 'classification');
      const other = parseGraphSettings({ model: '/models/x.onnx' }, undefined);
      assert.equal(other.labelsPath, undefined, 'no default labels for another model');
      assert.throws(() => parseGraphSettings({ scale: 'big' }, undefined), /scale must be a number \(or a fraction like 1\/255\)/);
      assert.throws(() => parseGraphSettings({ channels: '2' }, undefined), /channels must be 1, 3 or auto/);
      assert.throws(() => parseGraphSettings({ preset: 'segmentation' }, undefined), /postprocess preset must be one of classification, raw, detection, text-detection, text-recognition, got "segmentation"/);
    });

    it('resolves relative paths in the user directory first, then in the package', function () {
      assert.equal(PACKAGE_ROOT, ROOT);
      assert.equal(resolveConfigPath('models/mnist/labels.txt', '/nonexistent-user-dir'), path.join(ROOT, 'models', 'mnist', 'labels.txt'));
      assert.equal(resolveConfigPath('mnist/labels.txt', path.join(ROOT, 'models')), path.join(ROOT, 'models', 'mnist', 'labels.txt'));
      assert.equal(resolveConfigPath('missing.onnx', '/udir'), '/udir/missing.onnx');
      assert.equal(resolveConfigPath('/abs/m.onnx', '/udir'), '/abs/m.onnx');
    });
  });

  describe('leases', function () {
    const settings = () => ({ ...parseGraphSettings({ model: '' }, undefined) });

    it('the first user loads, the last one releases, exactly once, with removed as free', async function () {
      const { engine, calls, graphReleases } = fakeEngine();
      const device = new DeviceLease(() => engine, 'd', parsePoolSettings({}), 'cpu');
      const lease = new GraphLease(() => engine, device, settings(), 'g', log);
      const a = user();
      const b = user();
      lease.register(a);
      lease.register(b);
      await lease.whenLoaded();
      assert.deepEqual(calls, ['acquireDevice cpu-d', 'loadGraph']);
      assert.equal(a.states.at(-1)?.state, 'ready');
      await lease.deregister(a, true);
      assert.deepEqual(calls, ['acquireDevice cpu-d', 'loadGraph'], 'still one user');
      const released = lease.deregister(b, true);
      await pause(0);
      graphReleases.shift()!();
      await released;
      await lease.close(true);
      await device.close(true);
      assert.deepEqual(calls, ['acquireDevice cpu-d', 'loadGraph', 'releaseGraph free=true', 'releaseDevice cpu-d free=true']);
    });

    it('a new load during the old release keeps the device (the old release only gives back its own hold)', async function () {
      const { engine, calls, graphReleases } = fakeEngine();
      const device = new DeviceLease(() => engine, 'd', parsePoolSettings({}), 'cpu');
      const lease = new GraphLease(() => engine, device, settings(), 'g', log);
      const a = user();
      lease.register(a);
      await lease.whenLoaded();
      const oldRelease = lease.deregister(a, false); // waits in releaseGraph
      const b = user();
      lease.register(b);
      await lease.whenLoaded();
      graphReleases.shift()!();
      await oldRelease;
      assert.ok(!calls.some((c) => c.startsWith('releaseDevice')), calls.join('; '));
      assert.equal(b.states.at(-1)?.state, 'ready');
    });

    it('give adapters the graph id and the batch cap once loaded, and nothing before', async function () {
      const { engine } = fakeEngine();
      const device = new DeviceLease(() => engine, 'd', parsePoolSettings({}), 'cpu');
      const lease = new GraphLease(() => engine, device, settings(), 'g', log);
      assert.equal(lease.graphId, undefined);
      assert.equal(lease.batchCap(), undefined);
      lease.register(user());
      await lease.whenLoaded();
      await pause(0);
      assert.equal(lease.graphId, 'g');
      assert.equal(lease.batchCap(), 8);
    });

    it("pass the engine's warnings about their graph or device on, and stop listening when released", async function () {
      const { engine, graphReleases } = fakeEngine();
      const deviceWarnings: string[] = [];
      const graphWarnings: string[] = [];
      const device = new DeviceLease(() => engine, 'd', parsePoolSettings({}), 'cpu', (m) => deviceWarnings.push(m));
      const lease = new GraphLease(() => engine, device, settings(), 'g', { ...log, warn: (m) => graphWarnings.push(m) });
      const a = user();
      const b = user();
      lease.register(a);
      lease.register(b);
      await lease.whenLoaded();
      assert.equal(engine.listenerCount('warning'), 2, 'one listener per lease');
      const graphId = lease.graphId!;
      engine.emit('warning', new ModelLoadError('g on cpu-d: fell back to FP32'), { graph: graphId, graphName: 'g', device: 'cpu-d' });
      engine.emit('warning', new ModelLoadError('other could not be loaded on cpu-x: no such file'), { graph: 'other-id', graphName: 'other', device: 'cpu-x' });
      // Wording that looks like theirs reaches nobody: routing goes by the ids the engine names.
      engine.emit('warning', new ModelLoadError('g on cpu-d: but about another graph and device'), { graph: 'g2-id', graphName: 'g2', device: 'cpu-d2' });
      assert.deepEqual(graphWarnings, ['g on cpu-d: fell back to FP32']);
      assert.deepEqual(a.warnings, ['g on cpu-d: fell back to FP32'], 'every user of the graph hears it');
      assert.deepEqual(b.warnings, ['g on cpu-d: fell back to FP32']);
      assert.deepEqual(deviceWarnings, ['g on cpu-d: fell back to FP32']);

      await lease.deregister(a, false);
      const released = lease.deregister(b, false);
      await pause(0);
      graphReleases.shift()!();
      await released;
      // The graph was the device's only user, so the device is released with it.
      assert.equal(engine.listenerCount('warning'), 0, 'nothing left behind for a redeploy to pile up');
      engine.emit('warning', new ModelLoadError('g on cpu-d: after release'), { graph: graphId, graphName: 'g', device: 'cpu-d' });
      assert.equal(graphWarnings.length, 1);
      assert.equal(deviceWarnings.length, 1);
    });

    it('a graph without a usable device fails with the reason, telling its users', async function () {
      const { engine } = fakeEngine();
      const lease = new GraphLease(() => engine, new Error('device config d is invalid: workers must be an integer'), settings(), 'g', log);
      const a = user();
      lease.register(a);
      await assert.rejects(lease.whenLoaded(), /device config d is invalid/);
      await pause(0);
      assert.equal(a.states.at(-1)?.state, 'failed');
    });
  });

  describe('wrapError', function () {
    it("keeps the cause's code as an own property (Node-RED copies own code and cause to msg.error)", function () {
      const cause = new ConfigError("width must be a number, got 'wide'");
      const err = wrapError(`graph config g is invalid: ${cause.message}`, cause);
      assert.equal(err.message, "graph config g is invalid: width must be a number, got 'wide'");
      assert.ok(Object.prototype.hasOwnProperty.call(err, 'code'));
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.equal(err.cause, cause);
      assert.equal(wrapError('x', new Error('plain')).code, undefined);
      assert.equal(wrapError('x', 'a thrown string').code, undefined);
    });

    it('an ncs2-infer message refused because the graph failed to load carries the load error code', async function () {
      const { engine } = fakeEngine();
      const lease = new GraphLease(() => engine, new ModelLoadError('cannot load model from m.onnx: not a protobuf'), parseGraphSettings({ model: '' }, undefined), 'g', log);
      const controller = new InferController({ graph: lease, status: () => undefined, warn: () => undefined, words: WORDS });
      controller.start();
      const ended: Array<Error | undefined> = [];
      controller.onInput({ payload: 1 }, () => undefined, (err) => ended.push(err));
      await assert.rejects(lease.whenLoaded());
      await pause(0);
      assert.match(String(ended[0]?.message), /the model is not loaded.*not a protobuf/);
      assert.equal((ended[0] as Error & { code?: string }).code, 'MODEL_LOAD_FAILED');
      await controller.close(true);
    });
  });

  describe('InferController', function () {
    it('ends held messages with an error when the model fails to load, and after close refuses new ones', async function () {
      const { engine } = fakeEngine();
      const lease = new GraphLease(() => engine, new Error('no device selected'), parseGraphSettings({ model: '' }, undefined), 'g', log);
      const shown: NodeStatus[] = [];
      const controller = new InferController({ graph: lease, status: (s) => shown.push(s), warn: () => undefined, words: WORDS });
      controller.start();
      const ended: Array<Error | undefined> = [];
      controller.onInput({ payload: 1 }, () => undefined, (err) => ended.push(err));
      await assert.rejects(lease.whenLoaded());
      await pause(0);
      assert.equal(ended.length, 1);
      assert.match(String(ended[0]?.message), /the model is not loaded, so the message was not processed: no device selected/);
      assert.equal((ended[0] as Error & { code?: string }).code, undefined, 'a plain cause has no code to keep');
      assert.deepEqual(shown.at(-1), { fill: 'red', shape: 'ring', text: 'failed' });
      await controller.close(true);
      controller.onInput({ payload: 2 }, () => undefined, (err) => ended.push(err));
      assert.match(String(ended[1]?.message), /ncs2-infer is stopping/);
    });

    it('on close, answers the single-tensor messages still gathering for a batch before it lets the graph go', async function () {
      this.timeout(30000);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-close-'));
      const model = path.join(dir, 'mlp.onnx');
      fs.writeFileSync(model, buildMlp({ inputSize: 4, hidden: [4], outputSize: 2, seed: 5 }));
      const engine = new InferenceEngine();
      try {
        const device = new DeviceLease(() => engine, 'close', parsePoolSettings({ kind: 'cpu', workers: '1' }), 'cpu');
        const lease = new GraphLease(() => engine, device, parseGraphSettings({ model, preset: 'raw', rawFormat: 'typed', batching: true }, undefined), 'mlp', log);
        const controller = new InferController({ graph: lease, status: () => undefined, warn: () => undefined, words: WORDS });
        controller.start();
        const loaded = await lease.whenLoaded();
        const burst = (n: number, sent: unknown[], ended: Array<Error | undefined>) => {
          for (let i = 0; i < n; i++) controller.onInput({ payload: { data: new Float32Array(4).fill(i), dims: [1, 4] } }, (msg) => sent.push(msg), (err) => ended.push(err));
        };
        // The adaptive cap starts at 1 (every message leaves at once); full batches make it grow.
        const until = Date.now() + 20000;
        while ((engine.batchCap(loaded.setup.handle) ?? 0) < 4 && Date.now() < until) {
          const ended: Array<Error | undefined> = [];
          burst(16, [], ended);
          while (ended.length < 16) await pause(1);
        }
        assert.ok(engine.batchCap(loaded.setup.handle)! >= 4, 'the batch cap grew');
        const sent: unknown[] = [];
        const ended: Array<Error | undefined> = [];
        burst(3, sent, ended);
        // Closed in the same turn: the three are gathered (under the cap), not yet in the engine.
        await controller.close(true);
        assert.deepEqual(ended, [undefined, undefined, undefined], 'each answered, none failed');
        assert.equal(sent.length, 3);
      } finally {
        await engine.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
