import { strict as assert } from 'assert';
import { CpuDevice, align64 } from '../../src/engine/devices/cpu/cpu-device';
import { Pacer } from '../../src/engine/devices/sim-ncs2/pacer';
import { LruCache } from '../../src/engine/graph/lru-cache';
import { buildMlp } from '../../src/engine/graph/builder';
import { DeviceError, InputError, ModelLoadError } from '../../src/engine/errors';
import type { NamedTensor } from '../../src/engine/devices/device';

const model = buildMlp({ inputSize: 16, hidden: [32], outputSize: 4, seed: 5 });
const input = (rows = 1): NamedTensor => ({ name: 'input', type: 'float32', dims: [rows, 16], data: new Float32Array(rows * 16).fill(0.25) });

describe('cpu device: limits, hand-off errors and unloading under load', function () {
  this.timeout(60_000);
  let device: CpuDevice | undefined;
  afterEach(async function () {
    await device?.close();
    device = undefined;
  });

  it('aligns sizes of 2 GiB and more without overflowing', function () {
    assert.equal(align64(1), 64);
    assert.equal(align64(64), 64);
    assert.equal(align64(2 ** 31 + 1), 2 ** 31 + 64);
    assert.equal(align64(5 * 2 ** 30 + 3), 5 * 2 ** 30 + 64);
  });

  it('refuses an input or output over maxTensorBytes in that task only, naming the tensor and the limit', async function () {
    device = new CpuDevice({ workers: 1, threadsPerWorker: 1, maxTensorBytes: 1024 });
    await device.load({ key: 'm', model, session: {} });
    await assert.rejects(device.run({ graphKey: 'm', inputs: [input(17)] }), (err: Error) => {
      assert.ok(err instanceof InputError);
      assert.match(err.message, /input 'input' is 1088 bytes; the largest tensor this device takes is 1024 bytes: send fewer or smaller samples/);
      return true;
    });
    await assert.rejects(device.run({ graphKey: 'm', inputs: [input(1)], outputs: [{ name: 'output', type: 'float32', dims: [300, 4] }] }), /output 'output' is 4800 bytes/);
    const ok = await device.run({ graphKey: 'm', inputs: [input(16)] });
    assert.deepEqual(ok.outputs.output.dims, [16, 4]);
  });

  it('a hand-off that cannot be built (in setImmediate, the worker busy) fails its own task; the others answer', async function () {
    device = new CpuDevice({ workers: 1, threadsPerWorker: 1 });
    await device.load({ key: 'm', model, session: {} });
    const first = device.run({ graphKey: 'm', inputs: [input(1)] }); // the worker is busy from here
    // Claims more bytes than its buffer holds: copying it into the arena throws a RangeError.
    const lying = new Float32Array(16);
    Object.defineProperty(lying, 'byteLength', { value: 1 << 20 });
    const bad = device.run({ graphKey: 'm', inputs: [{ name: 'input', type: 'float32', dims: [1, 16], data: lying }] });
    const next = device.run({ graphKey: 'm', inputs: [input(2)] }).then(() => undefined, (err: Error) => err);
    await assert.rejects(bad, (err: Error) => err instanceof DeviceError && /could not hand 2 request\(s\) to worker 0/.test(err.message));
    await first;
    assert.ok((await next) instanceof DeviceError, 'the task packed in the same message fails with it');
    const after = await device.run({ graphKey: 'm', inputs: [input(3)] });
    assert.deepEqual(after.outputs.output.dims, [3, 4]);
  });

  it('an unload while requests run keeps the sessions until they settle; a load meanwhile takes the graph back at once', async function () {
    device = new CpuDevice({ workers: 2, threadsPerWorker: 1 });
    await device.load({ key: 'm', model, session: {} });
    const runs = Array.from({ length: 40 }, (_, i) => device!.run({ graphKey: 'm', inputs: [input(1 + (i % 3))] }));
    await device.unload('m');
    const results = await Promise.all(runs);
    assert.equal(results.length, 40);
    // The last of them took the sessions with it.
    await assert.rejects(device.run({ graphKey: 'm', inputs: [input(1)] }), /is not loaded on this worker/);
    await device.load({ key: 'm', model, session: {} });
    // Taken back before its last request settled: no load reaches the workers, and it runs.
    let moreSettled = false;
    const more = device.run({ graphKey: 'm', inputs: [input(1)] }).finally(() => (moreSettled = true));
    await device.unload('m');
    await device.load({ key: 'm', model, session: {} });
    // A load that went to the workers would answer after the run (a worker's messages are ordered).
    assert.equal(moreSettled, false, 'the graph came back without a round trip to the workers');
    await more;
    assert.deepEqual((await device.run({ graphKey: 'm', inputs: [input(2)] })).outputs.output.dims, [2, 4]);
    // Unloaded with nothing running: the sessions go.
    await device.unload('m');
    await assert.rejects(device.run({ graphKey: 'm', inputs: [input(1)] }), /is not loaded on this worker/);
  });

  it('reports each loaded graph\'s memory and refuses a load past the memory budget, saying what it needs and what is taken', async function () {
    device = new CpuDevice({ workers: 2, threadsPerWorker: 1, memoryBudgetMb: 8 });
    await device.load({ key: 'small', model, session: {} });
    const memory = device.memoryStats().graphMemory!;
    const small = memory.byGraph.small;
    assert.equal(small.modelBytes, model.byteLength);
    assert.equal(small.copies, 2);
    assert.ok(small.bytes >= 2 * model.byteLength && small.bytes >= small.measuredBytes, JSON.stringify(small));
    assert.equal(memory.budgetBytes, 8 * 2 ** 20);
    const big = buildMlp({ inputSize: 1024, hidden: [1024], outputSize: 10, seed: 4 }); // about 4 MB of weights, x 2 workers
    await assert.rejects(device.load({ key: 'big', model: big, session: {} }), (err: Error) => {
      assert.ok(err instanceof ModelLoadError, err.name);
      assert.match(err.message, /^cpu: loading this model needs at least 8\.\d MB \(4\.\d MB per worker x 2\), and the 1 graph\(s\) loaded here take \d+\.\d MB of the device's 8\.0 MB memory budget: use fewer models on this device/);
      return true;
    });
    assert.deepEqual(Object.keys(device.memoryStats().graphMemory!.byGraph), ['small'], 'a refused load holds nothing');
    await device.unload('small');
    assert.equal(device.memoryStats().graphMemory!.totalBytes, 0);
  });

  it('close() fails a load still in progress instead of leaving it pending', async function () {
    device = new CpuDevice({ workers: 1, threadsPerWorker: 1 });
    const loading = device.load({ key: 'big', model: buildMlp({ inputSize: 512, hidden: [1024, 1024], outputSize: 10, seed: 9 }), session: {} }).then(
      () => 'loaded',
      (err: Error) => err.message,
    );
    await device.close();
    assert.match(await loading, /was closed/);
  });
});

describe('LruCache with entries in use', function () {
  it('evicts only evictable entries, may hold more while they are in use, and trims when they become idle', function () {
    const inUse = new Set(['a', 'b', 'c', 'd', 'e']);
    const evicted: string[] = [];
    const cache = new LruCache<string, number>(2, (key) => evicted.push(key), (key) => !inUse.has(key));
    for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) cache.set(key, i);
    assert.deepEqual(evicted, [], 'every entry is in use');
    assert.equal(cache.size, 4);
    inUse.delete('a');
    cache.set('e', 4);
    assert.deepEqual(evicted, ['a'], 'the idle entry goes, however recent the others');
    inUse.delete('b');
    inUse.delete('c');
    cache.trim();
    assert.deepEqual(evicted, ['a', 'b', 'c'], 'least recently used first, down to the capacity');
    assert.deepEqual([...cache.values()], [3, 4]);
    assert.equal(cache.stats().evictions, 3);
  });

  it('without a predicate behaves as a plain LRU', function () {
    const cache = new LruCache<string, number>(1);
    cache.set('a', 1);
    cache.set('b', 2);
    assert.equal(cache.peek('a'), undefined);
    assert.equal(cache.peek('b'), 2);
  });
});

describe('sim-ncs2 pacer', function () {
  it('a callback that throws goes to its own failure handler; the others due at the same time still run', async function () {
    const pacer = new Pacer();
    const ran: string[] = [];
    const failed: string[] = [];
    const at = performance.now() + 5;
    pacer.schedule(at, () => ran.push('first'), () => failed.push('first'));
    pacer.schedule(at, () => {
      throw new Error('broken delivery');
    }, (err) => failed.push(err.message));
    pacer.schedule(at, () => ran.push('third'), () => failed.push('third'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.deepEqual(ran, ['first', 'third']);
    assert.deepEqual(failed, ['broken delivery']);
  });
});
