import { strict as assert } from 'assert';
import * as ort from 'onnxruntime-node';
import { buildGemm, buildMlp, buildMobileNetLike, mulberry32 } from '../../src/engine/graph/builder';
import { decodeModel, toNumber } from '../../src/engine/graph/onnx';
import { readModelInfo } from '../../src/engine/graph/model-info';

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 };

/** Deterministic inputs in [-1, 1). */
function randomInput(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

async function runOnce(bytes: Uint8Array, name: string, data: Float32Array, dims: number[]): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(bytes, SESSION_OPTIONS);
  try {
    const out = await session.run({ [name]: new ort.Tensor('float32', data, dims) });
    return out[session.outputNames[0]];
  } finally {
    await session.release();
  }
}

function assertFinite(data: ArrayLike<number>): void {
  for (let i = 0; i < data.length; i++) assert.ok(Number.isFinite(data[i]), `element ${i} is ${data[i]}`);
}

function floatInitializer(bytes: Uint8Array, name: string): Float32Array {
  const t = decodeModel(bytes).graph?.initializer?.find((x) => x.name === name);
  assert.ok(t?.rawData, `initializer ${name} missing`);
  const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
  return Float32Array.from({ length: t.rawData.byteLength / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

describe('graph/builder', () => {
  describe('buildMlp', () => {
    const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, seed: 42 });

    it('runs in onnxruntime-node with a dynamic batch (1 and 4)', async () => {
      const session = await ort.InferenceSession.create(mlp, SESSION_OPTIONS);
      try {
        for (const batch of [1, 4]) {
          const out = await session.run({ input: new ort.Tensor('float32', randomInput(batch * 784, batch), [batch, 784]) });
          assert.deepEqual(out.output.dims, [batch, 10]);
          assertFinite(out.output.data as Float32Array);
        }
      } finally {
        await session.release();
      }
    });

    it('fixes the batch dim when asked', async () => {
      const fixed = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, batch: 2 });
      const info = readModelInfo(fixed);
      assert.deepEqual(info.inputs[0].dims, [2, 784]);
      assert.deepEqual(info.outputs[0].dims, [2, 10]);
      const out = await runOnce(fixed, 'input', randomInput(2 * 784, 5), [2, 784]);
      assert.deepEqual(out.dims, [2, 10]);
    });

    it('rejects bad sizes', () => {
      assert.throws(() => buildMlp({ inputSize: 0, hidden: [], outputSize: 1 }), RangeError);
      assert.throws(() => buildMlp({ inputSize: 4, hidden: [2.5], outputSize: 1 }), RangeError);
      assert.throws(() => buildMlp({ inputSize: 4, hidden: [], outputSize: 1, batch: 0 }), RangeError);
    });
  });

  describe('buildMobileNetLike', () => {
    it('runs at 224x224 with finite, non-constant logits', async () => {
      const model = buildMobileNetLike({ seed: 7 });
      const out = await runOnce(model, 'input', randomInput(3 * 224 * 224, 11), [1, 3, 224, 224]);
      assert.deepEqual(out.dims, [1, 1000]);
      const logits = out.data as Float32Array;
      assertFinite(logits);
      let min = Infinity;
      let max = -Infinity;
      for (const v of logits) [min, max] = [Math.min(min, v), Math.max(max, v)];
      // He-scaled weights keep logits O(1): neither collapsed nor blown up.
      assert.ok(max - min > 0.5, `logit spread ${max - min} too small`);
      assert.ok(max - min < 100, `logit spread ${max - min} too large`);
    });

    it('honours inputSize, numClasses, widthMultiplier and batch', async () => {
      const model = buildMobileNetLike({ inputSize: 96, numClasses: 7, widthMultiplier: 0.5, batch: 2 });
      const info = readModelInfo(model);
      assert.deepEqual(info.inputs[0].dims, [2, 3, 96, 96]);
      assert.deepEqual(info.outputs, [{ name: 'logits', type: 'float32', dims: [2, 7] }]);
      const out = await runOnce(model, 'input', randomInput(2 * 3 * 96 * 96, 3), [2, 3, 96, 96]);
      assert.deepEqual(out.dims, [2, 7]);
      assertFinite(out.data as Float32Array);
    });
  });

  describe('buildGemm', () => {
    const [m, k, n] = [64, 512, 256];
    const x = randomInput(m * k, 9);

    it('fp32 computes input x weight', async () => {
      const model = buildGemm({ m, k, n, precision: 'fp32', seed: 3 });
      const w = floatInitializer(model, 'weight');
      const y = (await runOnce(model, 'input', x, [m, k])).data as Float32Array;
      for (const [i, j] of [[0, 0], [13, 200], [63, 255]]) {
        let ref = 0;
        for (let p = 0; p < k; p++) ref += x[i * k + p] * w[p * n + j];
        assert.ok(Math.abs(y[i * n + j] - ref) < 1e-4, `y[${i},${j}] = ${y[i * n + j]}, expected ${ref}`);
      }
    });

    it('int8 output is close to the fp32 output', async () => {
      const y32 = (await runOnce(buildGemm({ m, k, n, precision: 'fp32', seed: 3 }), 'input', x, [m, k])).data as Float32Array;
      const y8 = (await runOnce(buildGemm({ m, k, n, precision: 'int8', seed: 3 }), 'input', x, [m, k])).data as Float32Array;
      let num = 0;
      let den = 0;
      for (let i = 0; i < y32.length; i++) {
        num += (y8[i] - y32[i]) ** 2;
        den += y32[i] ** 2;
      }
      const rel = Math.sqrt(num / den);
      // Quantization noise (uniform, variance step^2/12) relative to signal variance:
      //   activations U(-1,1), step 2/255: (2/255)^2/12 / (1/3)          = 1.5e-5
      //   weights U(-a,a), 7-bit per column, step a/63: (a/63)^2/12 / (a^2/3) = 6.3e-5
      // Independent errors add, so relative RMS error ~ sqrt(7.8e-5) = 0.0088.
      // 0.02 leaves >2x margin; int16 saturation in u8s8 kernels shows up as ~0.19.
      assert.ok(rel < 0.02, `relative RMS error ${rel}`);
      assert.ok(rel > 0, 'int8 output identical to fp32: quantization not applied?');
    });

    it('int8 model is a QDQ graph with int8 weights', () => {
      const info = readModelInfo(buildGemm({ m: 4, k: 8, n: 2, precision: 'int8' }));
      assert.equal(info.precision, 'int8');
      assert.deepEqual(info.opTypes, { QuantizeLinear: 1, DequantizeLinear: 2, MatMul: 1 });
    });
  });

  describe('determinism', () => {
    it('same seed gives byte-identical models', () => {
      assert.deepEqual(buildMlp({ inputSize: 20, hidden: [8, 8], outputSize: 3, seed: 5 }), buildMlp({ inputSize: 20, hidden: [8, 8], outputSize: 3, seed: 5 }));
      assert.deepEqual(buildMobileNetLike({ inputSize: 64, numClasses: 10, seed: 5 }), buildMobileNetLike({ inputSize: 64, numClasses: 10, seed: 5 }));
      for (const precision of ['fp32', 'int8'] as const) {
        assert.deepEqual(buildGemm({ m: 8, k: 16, n: 4, precision, seed: 5 }), buildGemm({ m: 8, k: 16, n: 4, precision, seed: 5 }));
      }
    });

    it('different seeds give different weights on the same graph', () => {
      const a = decodeModel(buildMobileNetLike({ inputSize: 64, numClasses: 10, seed: 1 }));
      const b = decodeModel(buildMobileNetLike({ inputSize: 64, numClasses: 10, seed: 2 }));
      assert.deepEqual(
        a.graph?.node?.map((nd) => nd.opType),
        b.graph?.node?.map((nd) => nd.opType),
      );
      const ia = a.graph?.initializer ?? [];
      const ib = b.graph?.initializer ?? [];
      assert.equal(ia.length, ib.length);
      for (let i = 0; i < ia.length; i++) {
        assert.deepEqual(ia[i].dims?.map(toNumber), ib[i].dims?.map(toNumber));
        // Scalar clip bounds are constants; every real weight tensor must differ.
        if ((ia[i].rawData?.length ?? 0) > 4) assert.notDeepEqual(ia[i].rawData, ib[i].rawData, ia[i].name ?? '');
      }
      assert.notDeepEqual(floatInitializer(buildMlp({ inputSize: 4, hidden: [], outputSize: 2, seed: 1 }), 'fc0.weight'),
        floatInitializer(buildMlp({ inputSize: 4, hidden: [], outputSize: 2, seed: 2 }), 'fc0.weight'));
    });
  });
});
