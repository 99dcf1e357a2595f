import { strict as assert } from 'assert';
import * as os from 'os';
import { ConfigError } from '../../src/engine/errors';
import { checkDeviceSpec, createDevice, maxDeviceThreads } from '../../src/engine/devices/factory';
import { parseBatchSettings, parseDeviceSettings, parseGraphSettings, parseInferSettings, parseThermalSettings } from '../../nodes/lib/settings';
import { NCS2_NODES, buildFlow, collect, helper, node, useNodeRedServer, waitFor } from './support';

/** Asserts a ConfigError whose message matches. */
function refused(run: () => unknown, pattern: RegExp): void {
  assert.throws(run, (e: Error) => e instanceof ConfigError && pattern.test(e.message));
}

describe('config upper bounds', function () {
  const cores = os.availableParallelism();
  const limit = cores * 4;

  describe('the engine refuses a device spec it could not honour, before any worker exists', function () {
    it('workers and threads per worker up to 4 per core; requests in flight up to 65,536', function () {
      assert.equal(maxDeviceThreads(), limit);
      checkDeviceSpec({ kind: 'cpu', workers: limit, threadsPerWorker: limit, maxInFlight: 65536 });
      const per = `4 per core, ${cores} core${cores > 1 ? 's' : ''} here`;
      refused(() => createDevice({ kind: 'cpu', workers: 1e9 }), new RegExp(`^workers must be at most ${limit} \\(${per}\\), got 1000000000$`));
      refused(() => createDevice({ kind: 'cpu', workers: 1, threadsPerWorker: 1e9 }), new RegExp(`^threads per worker must be at most ${limit} \\(${per}\\), got 1000000000$`));
      refused(() => createDevice({ kind: 'cpu', workers: limit + 1 }), new RegExp(`got ${limit + 1}$`));
      refused(() => createDevice({ kind: 'cpu', workers: 1, maxInFlight: 1e7 }), /^requests in flight must be at most 65536 \(each holds its tensors until it answers\), got 10000000$/);
      refused(() => createDevice({ kind: 'sim-ncs2', maxInFlight: 1e7 }), /requests in flight must be at most 65536/);
    });

    it('non-integers, zero, NaN and strings are refused with what arrived', function () {
      refused(() => createDevice({ kind: 'cpu', workers: 0 }), new RegExp(`^workers must be a whole number from 1 to ${limit}, got 0$`));
      refused(() => createDevice({ kind: 'cpu', workers: NaN }), /workers must be a whole number from 1 to \d+, got NaN$/);
      refused(() => createDevice({ kind: 'cpu', workers: 1, threadsPerWorker: 1.5 }), /threads per worker must be a whole number from 1 to \d+, got 1.5/);
      refused(() => createDevice({ kind: 'cpu', workers: '4' as unknown as number }), /workers must be a whole number from 1 to \d+, got "4"/);
      refused(() => createDevice({ kind: 'sim-ncs2', usb: 4 as 3 }), /^usb must be 2 or 3 \(the USB generation of the simulated port\), got 4$/);
    });
  });

  describe('config node settings', function () {
    it('device: workers, threads, queue capacity and requests in flight are bounded', function () {
      refused(() => parseDeviceSettings({ kind: 'cpu', workers: '1e9' }), new RegExp(`workers must be at most ${limit}`));
      refused(() => parseDeviceSettings({ kind: 'cpu', threadsPerWorker: '1000000000' }), new RegExp(`threads per worker must be at most ${limit}`));
      refused(() => parseDeviceSettings({ kind: 'cpu', queueCapacity: '1e9' }), /^queue capacity must be at most 65536 \(each queued message holds its input tensor in memory\), got 1000000000$/);
      refused(() => parseDeviceSettings({ kind: 'sim-ncs2', maxInFlight: '100000' }), /requests in flight must be at most 65536/);
      assert.equal(parseDeviceSettings({ kind: 'cpu', workers: String(limit), queueCapacity: '65536' }).workers, limit);
    });

    it('graph: max batch, engine batch size, input size and pixels, and target latency are bounded', function () {
      refused(() => parseGraphSettings({ model: '', maxBatch: '30000' }, undefined), /^max batch must be at most 4096 \(a batch is one tensor, and the engine refuses tensors over 1 GiB\), got 30000$/);
      refused(() => parseGraphSettings({ model: '', batching: true, batchMaxSize: '5000' }, undefined), /max batch size must be at most 4096/);
      refused(() => parseGraphSettings({ model: '', width: '100000' }, undefined), /^width must be at most 16383 \(one side of sharp's default input pixel limit\), got 100000$/);
      refused(() => parseGraphSettings({ model: '', height: '1e9' }, undefined), /^height must be at most 16383/);
      refused(() => parseGraphSettings({ model: '', maxInputPixels: '1e12' }, undefined), /max input pixels must be at most 268402689 \(sharp's default input pixel limit\), got 1000000000000/);
      refused(() => parseGraphSettings({ model: '', batching: true, batchTargetMs: '1e10' }, undefined), /^target latency must be at most 2147483647 ms \(about 24.8 days, the longest timer Node.js keeps\), got 10000000000 ms$/);
      assert.equal(parseGraphSettings({ model: '', maxBatch: '4096' }, undefined).maxBatch, 4096);
    });

    it('infer, batch and thermal guard: waiting, in flight, items and timer delays are bounded', function () {
      refused(() => parseInferSettings({ policy: 'reject', maxWaiting: '1e9' }), /^waiting must be at most 65536/);
      refused(() => parseInferSettings({ policy: 'reject', maxInFlight: '1e9' }), /^in flight must be at most 65536/);
      refused(() => parseBatchSettings({ maxItems: '1e6' }), /^max items must be at most 4096/);
      refused(() => parseBatchSettings({ mode: 'time', timeout: '3e9' }), /^max wait must be at most 2147483647 ms/);
      refused(() => parseThermalSettings({ interval: '3e6' }), /^reading interval must be at most 2147483647 ms/);
    });
  });

  describe('on deploy', function () {
    useNodeRedServer();

    it('workers = 1e9 is shown as the device config error on every message; nothing starts and the process lives', async function () {
      await helper.load(NCS2_NODES, buildFlow({ observers: true, device: { workers: '1000000000' } }));
      const caught = collect('caught') as Array<{ error: { message: string } }>;
      node('infer').receive({ payload: { data: new Float32Array(784), dims: [1, 1, 28, 28] } });
      await waitFor(() => caught.length === 1, 'the error');
      assert.match(caught[0].error.message, new RegExp(`device config .* is invalid: member 1 \\(cpu\\): workers must be at most ${limit} \\(4 per core`));
    });
  });
});
