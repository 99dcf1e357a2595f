import { strict as assert } from 'assert';
import * as path from 'path';
import sharp from 'sharp';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { InputError } from '../../src/engine/errors';
import { resolveImageSpec } from '../../src/engine/io/preprocess';
import { runInference, type InferenceSetup } from '../../src/engine/io/infer';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { DataType, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';

const ROOT = path.resolve(__dirname, '../../..');
const MODEL = path.join(ROOT, 'models', 'mnist', 'mnist-cnn.onnx');

/** A photo-like JPEG: a gradient with noise, so it does not compress to nothing. */
async function photo(width: number, height: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < raw.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const x = (i / 3) % width;
    raw[i] = ((x * 255) / width + (s % 40)) & 255;
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** Input (uint8 or float32, [1, 3, 32, 32]) -> Cast -> GlobalAveragePool -> [1, 3, 1, 1]. */
function poolModel(type: 'uint8' | 'float32'): Uint8Array {
  return encodeModel(
    makeModel({
      name: `pool_${type}`,
      node: [makeNode('Cast', ['x'], ['xf'], { to: { int: DataType.FLOAT } }), makeNode('GlobalAveragePool', ['xf'], ['y'])],
      initializer: [],
      input: [makeValueInfo('x', type === 'uint8' ? DataType.UINT8 : DataType.FLOAT, [1, 3, 32, 32])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 3, 1, 1])],
    }),
  );
}

describe('io: the request pipeline (preprocess, infer, postprocess) on real images', function () {
  this.timeout(30000);
  let engine: InferenceEngine;
  let setup: InferenceSetup;
  let good: Buffer[];

  before(async function () {
    engine = new InferenceEngine();
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-pipe-test', workers: 1 });
    const handle = await engine.loadGraph(MODEL, { devices: ['cpu-pipe-test'] });
    setup = { handle, image: resolveImageSpec(handle.info.inputs[0], { maxInputPixels: 1_000_000 }), maxBatch: 8, output: { kind: 'classification', topK: 1 } };
    good = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((i) => photo(320, 240, i)));
  });

  after(async function () {
    await engine.close();
  });

  beforeEach(function () {
    engine.setStageConcurrency('preprocess', 'auto');
    engine.resetStats();
  });

  it('a corrupt and a truncated image each fail in preprocess with their own error; the others complete', async function () {
    const truncated = good[0].subarray(0, Math.floor(good[0].length / 3));
    const corrupt = Buffer.from('this is not an image at all, just text pretending to be one');
    const payloads = [good[1], truncated, good[2], corrupt, good[3], good[4]];
    const settled = await Promise.allSettled(payloads.map((p) => runInference(engine, setup, p)));
    const failures = settled.map((r) => (r.status === 'rejected' ? (r.reason as Error) : null));
    assert.equal(settled.filter((r) => r.status === 'fulfilled').length, 4);
    assert.ok(failures[1] instanceof InputError);
    assert.match(failures[1]!.message, /could not be decoded.*truncated or corrupt/);
    assert.ok(failures[3] instanceof InputError);
    assert.match(failures[3]!.message, /expected an encoded JPEG, PNG or WebP image; got 59 bytes/);
    const st = engine.getStats().pipeline.stages;
    assert.equal(st.preprocess.failed, 2);
    assert.equal(st.preprocess.completed, 4);
    assert.equal(st.infer.completed, 4, 'the failed images never reached the device');
    assert.equal(st.postprocess.completed, 4);
  });

  it('an image above the pixel limit is refused from its header, before decoding', async function () {
    const big = await sharp({ create: { width: 2000, height: 1500, channels: 3, background: { r: 90, g: 120, b: 200 } } }).jpeg().toBuffer();
    // Only the header survives: a decode would fail as truncated, so the pixel-limit error proves none was tried.
    const headerOnly = big.subarray(0, 700);
    for (const image of [big, headerOnly]) {
      await assert.rejects(runInference(engine, setup, image), (err: Error) => err instanceof InputError && /image is 2000x1500 = 3000000 pixels, above the limit of 1000000/.test(err.message));
    }
    assert.equal(engine.getStats().pipeline.stages.preprocess.failed, 2);
  });

  it('preprocess is bounded: never more decodes at once than its slots, the rest wait (visible as queued)', async function () {
    engine.setStageConcurrency('preprocess', 2, 'test');
    let most = 0;
    let mostQueued = 0;
    let running = true;
    const watch = (async () => {
      while (running) {
        const p = engine.getStats().pipeline.stages.preprocess;
        most = Math.max(most, p.active);
        mostQueued = Math.max(mostQueued, p.queued);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const results = await Promise.all([...good, ...good].map((p) => runInference(engine, setup, p)));
    running = false;
    await watch;
    assert.equal(results.length, 16);
    assert.equal(most, 2);
    assert.ok(mostQueued >= 10, `queued at most ${mostQueued}`);
    const s = engine.getStats();
    const pre = s.pipeline.stages.preprocess;
    assert.equal(pre.completed, 16);
    assert.equal(pre.concurrency, 2);
    assert.ok(pre.serviceMs.p50 > 0 && pre.serviceMs.p99 >= pre.serviceMs.p50);
    assert.ok(pre.waitMs.maxMs > pre.serviceMs.p50, 'later requests waited for a slot');
    assert.equal(s.pipeline.stages.infer.completed, 16);
    assert.ok(s.pipeline.stages.infer.serviceMs.p50 > 0);
    assert.equal(s.pipeline.stages.postprocess.completed, 16);
    assert.equal(s.pipeline.stages.toDevice.present, false);
    assert.equal(s.pipeline.stages.fromDevice.present, false);
    assert.ok(s.pipeline.bottleneck, 'a bottleneck is named after a run');
    const d = s.devices['cpu-pipe-test'];
    // MNIST input: float32 [1, 1, 28, 28] = 3136 bytes in, 10 logits = 40 bytes out
    assert.equal(d.transfer.bytesInPerSample, 28 * 28 * 4);
    assert.equal(d.transfer.bytesOutPerSample, 10 * 4);
  });

  it('stage concurrency is derived from the host unless set, and says from what', function () {
    const c = engine.getStats().pipeline.concurrency;
    assert.equal(c.fixed, false);
    assert.equal(c.preprocess, Math.min(c.uvThreadpoolSize, c.cores));
    const info = engine.getDevice('cpu-pipe-test')!.info;
    assert.equal(c.inferenceThreads, Number(info.workers) * Number(info.threadsPerWorker), 'workers x intra-op threads of the CPU device');
    assert.equal(typeof c.sharpThreadsPerImage, 'number');
    assert.match(c.reason, /decodes at once/);
  });
});

describe('transfer accounting on a simulated stick: uint8 vs float32 inputs', function () {
  this.timeout(30000);

  for (const type of ['uint8', 'float32'] as const) {
    it(`${type}: bytes per request and direction, on the link and as tensors`, async function () {
      const registry = new StickRegistry();
      const stick = new SimNcs2Device({ id: `xfer-${type}`, registry });
      const engine = new InferenceEngine({ devices: [stick] });
      try {
        const g = await engine.loadGraph(poolModel(type));
        const n = 3 * 32 * 32;
        const data = type === 'uint8' ? new Uint8Array(n).fill(7) : new Float32Array(n).fill(7);
        for (let i = 0; i < 4; i++) await engine.submit(g, { x: { type, dims: [1, 3, 32, 32], data } });
        const s = engine.getStats();
        const t = s.devices[stick.id].transfer;
        assert.equal(t.link, 'usb');
        assert.equal(t.samples, 4);
        // On the wire a stick takes uint8 as it is and floats as FP16; the host tensor is 1 or 4 bytes per value.
        assert.equal(t.bytesInPerSample, type === 'uint8' ? n : 2 * n);
        assert.equal(t.tensorBytesIn / t.samples, type === 'uint8' ? n : 4 * n);
        assert.equal(t.bytesOutPerSample, 3 * 2, 'three float outputs as FP16');
        assert.equal(t.bytesIn, 4 * t.bytesInPerSample);
        assert.ok(t.bytesInPerSec > 0);
        assert.ok(t.bandwidthUtilization !== null && t.bandwidthUtilization > 0 && t.bandwidthUtilization < 1);
        assert.equal(t.toDeviceMs.count, 4);
        // link time = bytes / 450 MB/s (USB 3)
        assert.ok(Math.abs(t.toDeviceMs.meanMs - (t.bytesInPerSample / 450e6) * 1000) < 0.002, `upload ${t.toDeviceMs.meanMs} ms`);
        const st = s.pipeline.stages;
        assert.equal(st.toDevice.present, true);
        assert.equal(st.toDevice.completed, 4);
        assert.equal(st.fromDevice.completed, 4);
        assert.equal(st.toDevice.concurrency, 1, 'one USB link');
        assert.deepEqual([s.devices[stick.id].queueDepths.toDevice, s.devices[stick.id].queueDepths.fromDevice], [0, 0]);
      } finally {
        await engine.close();
      }
    });
  }
});
