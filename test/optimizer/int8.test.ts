import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { buildMobileNetLike } from '../../src/engine/graph/builder';
import { DataType, IGraphProto, decodeModel, encodeModel, makeFloatTensor, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { readModelInfo } from '../../src/engine/graph/model-info';
import {
  CalibrationError,
  OptimizeOptionsError,
  UnsupportedModelError,
  optimizeModel,
  writeNpyFloat32,
  type QuantizedNode,
} from '../../src/engine/graph/optimizer';
import { activationParams, quantizeWeight, roundHalfEven } from '../../src/engine/graph/optimizer/qdq';
import { MNIST_MODEL, MNIST_SAMPLES, loadMnist, mnistAccuracy, relativeError, runOnce, syntheticImages, tmpDir } from './helpers';

function smallConvModel(opset: number, extra: 'sigmoid' | 'custom' | 'none' = 'none'): Uint8Array {
  const w = makeFloatTensor('w', [4, 1, 3, 3], Array.from({ length: 36 }, (_, i) => Math.sin(i) * 0.4));
  const b = makeFloatTensor('b', [4], [0.1, -0.1, 0.05, 0]);
  const nodes = [makeNode('Conv', ['x', 'w', 'b'], ['c'], { pads: { ints: [1, 1, 1, 1] } }), makeNode('Relu', ['c'], ['r'])];
  if (extra === 'sigmoid') nodes.push(makeNode('Sigmoid', ['r'], ['y']));
  else if (extra === 'custom') nodes.push(makeNode('MyOp', ['r'], ['y'], {}, 'my_op', 'org.example'));
  else nodes.push(makeNode('Identity', ['r'], ['y']));
  const graph: IGraphProto = {
    name: 'small',
    node: nodes,
    initializer: [w, b],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 1, 8, 8])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 4, 8, 8])],
  };
  return encodeModel(makeModel(graph, opset));
}

describe('optimizer: INT8 (QDQ)', function () {
  this.timeout(60000);

  it('quantizes weights symmetrically per channel with 7 bits and activations as uint8 with an exact zero', function () {
    const w = Float32Array.from([1, -0.5, 0.25, 0, -2, 1, 0.5, 0]);
    const { q, scales } = quantizeWeight(w, [2, 4], 0, 63);
    assert.deepEqual(Array.from(scales), [Math.fround(1 / 63), Math.fround(2 / 63)]);
    // Scales are float32: fround(1/63) is slightly above 1/63, so -0.5 / scale is just above -31.5.
    assert.deepEqual(Array.from(q), [63, -31, 16, 0, -63, 31, 16, 0]);
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4].map(roundHalfEven), [0, 2, 2, -0, -2, 2]);
    const perTensor = quantizeWeight(w, [2, 4], undefined, 63);
    assert.equal(perTensor.scales.length, 1);
    assert.equal(Math.max(...Array.from(perTensor.q, Math.abs)), 63);
    assert.deepEqual(activationParams(0, 2.55), { scale: Math.fround(0.01), zeroPoint: 0 });
    const p = activationParams(-1, 3);
    assert.equal(p.zeroPoint, Math.round(1 / p.scale));
    assert.deepEqual(activationParams(0, 0), { scale: 1, zeroPoint: 0 });
  });

  it('MNIST: top-1 within 1 point of float32 on the 2,000 held-out digits (calibrated on 200 training digits), all Conv/Gemm fused', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const { calibration } = loadMnist();
    const { bytes, report } = await optimizeModel(original, { precision: 'int8', calibration });
    const fp32 = await mnistAccuracy(original);
    const int8 = await mnistAccuracy(bytes);
    console.log(`      MNIST fp32 ${(fp32.accuracy * 100).toFixed(2)} %, int8 (minmax) ${(int8.accuracy * 100).toFixed(2)} %, logits relative error ${relativeError(fp32.logits, int8.logits).toFixed(3)}`);
    assert.ok(fp32.accuracy - int8.accuracy <= 0.01, `int8 ${int8.accuracy} vs fp32 ${fp32.accuracy}`);
    assert.equal(readModelInfo(bytes).precision, 'int8');
    assert.ok(bytes.length < original.length / 3, `size ${bytes.length}`);

    const kinds = (report.quantized as QuantizedNode[]).map((q) => `${q.op}:${q.kind}`);
    assert.deepEqual(kinds, [
      'Conv:compute', 'Relu:fused-activation', 'MaxPool:data-movement', 'Conv:compute', 'Relu:fused-activation',
      'MaxPool:data-movement', 'Flatten:data-movement', 'Gemm:compute', 'Relu:fused-activation', 'Gemm:compute',
    ]);
    assert.deepEqual(report.keptFloat, []);
    assert.deepEqual(report.calibration, { method: 'minmax', samples: 200, tensors: 4, perChannel: true, weightBits: 7 });
    // What onnxruntime actually runs: integer kernels, no float Conv/Gemm left.
    const rt = report.runtime;
    assert.ok(rt);
    assert.equal(rt.floatComputeKernels, 0);
    assert.equal(rt.ops['com.microsoft.QLinearConv'], 2);
    assert.equal(rt.ops['com.microsoft.QGemm'], 2);
  });

  it('MNIST: percentile calibration and per-tensor weights stay within 1 point; entropy runs and reports what it clipped', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const { calibration } = loadMnist();
    const fp32 = (await mnistAccuracy(original)).accuracy;
    const pct = await optimizeModel(original, { precision: 'int8', calibration, method: 'percentile' });
    const pctAcc = (await mnistAccuracy(pct.bytes)).accuracy;
    assert.equal(pct.report.calibration?.percentile, 99.99);
    const pt = await optimizeModel(original, { precision: 'int8', calibration, perChannel: false });
    const ptAcc = (await mnistAccuracy(pt.bytes)).accuracy;
    const ent = await optimizeModel(original, { precision: 'int8', calibration, method: 'entropy' });
    const entAcc = (await mnistAccuracy(ent.bytes)).accuracy;
    console.log(`      MNIST int8 percentile ${(pctAcc * 100).toFixed(2)} %, per-tensor ${(ptAcc * 100).toFixed(2)} %, entropy ${(entAcc * 100).toFixed(2)} %`);
    assert.ok(fp32 - pctAcc <= 0.01);
    assert.ok(fp32 - ptAcc <= 0.01);
    // MNIST's black backgrounds put spikes at each channel's relu(bias): KL picks narrow ranges.
    assert.ok(ent.report.warnings.some((w) => /entropy calibration cut .*'\/Relu_output_0'/.test(w)), ent.report.warnings.join('\n'));
  });

  it('MobileNet-like CNN: every Conv, Add, pool and the classifier run as int8 kernels', async function () {
    const original = buildMobileNetLike({ inputSize: 96, widthMultiplier: 0.5, numClasses: 10 });
    const calibration = syntheticImages(4, 3, 96);
    const { bytes, report } = await optimizeModel(original, { precision: 'int8', calibration, method: 'percentile' });
    const rt = report.runtime;
    assert.ok(rt);
    assert.equal(rt.floatComputeKernels, 0, JSON.stringify(rt.ops));
    assert.equal(rt.ops['com.microsoft.QLinearConv'], readModelInfo(original).opTypes.Conv);
    assert.equal(rt.ops['com.microsoft.QLinearAdd'], readModelInfo(original).opTypes.Add);
    assert.equal(rt.ops['com.microsoft.QLinearGlobalAveragePool'], 1);
    assert.equal(rt.ops['com.microsoft.QGemm'], 1);
    const x = new ort.Tensor('float32', calibration[0], [1, 3, 96, 96]);
    const a = (await runOnce(original, { input: x })).logits.data as Float32Array;
    const b = (await runOnce(bytes, { input: x })).logits.data as Float32Array;
    assert.ok(relativeError(a, b) < 0.1, `relative error ${relativeError(a, b)}`);
  });

  it('reports nodes left in float and why', async function () {
    const { report } = await optimizeModel(smallConvModel(17, 'sigmoid'), { precision: 'int8', calibration: syntheticImages(2, 1, 8) });
    assert.deepEqual(report.quantized.map((q) => q.op), ['Conv', 'Relu']);
    assert.deepEqual(report.keptFloat, [{ node: 'y', op: 'Sigmoid', reason: "onnxruntime's CPU provider has no int8 kernel for Sigmoid" }]);
    const out = await optimizeModel(fs.readFileSync(MNIST_MODEL), {
      precision: 'int8',
      calibration: loadMnist().calibration.slice(0, 20),
      excludeNodes: ['/fc2/Gemm'],
    });
    assert.deepEqual(out.report.keptFloat, [
      // Nothing reads Relu_2's output quantized any more, so no Q follows fc1 and its Relu stays float.
      { node: '/Relu_2', op: 'Relu', reason: 'its neighbours are not quantized, so it stays float' },
      { node: '/fc2/Gemm', op: 'Gemm', reason: 'excluded on request' },
    ]);
  });

  it('calibrates from a folder of images (grayscale, the model input size) and from a .npy file', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const fromImages = await optimizeModel(original, { precision: 'int8', calibration: MNIST_SAMPLES });
    assert.equal(fromImages.report.calibration?.samples, 20);
    const dir = tmpDir('opt-npy-');
    try {
      const digits = loadMnist().calibration.slice(0, 50);
      const data = new Float32Array(50 * 784);
      digits.forEach((d, i) => data.set(d, i * 784));
      const file = path.join(dir, 'calib.npy');
      fs.writeFileSync(file, writeNpyFloat32([50, 1, 28, 28], data));
      const fromNpy = await optimizeModel(original, { precision: 'int8', calibration: file });
      assert.equal(fromNpy.report.calibration?.samples, 50);
      const fromArrays = await optimizeModel(original, { precision: 'int8', calibration: digits });
      // Same data, same ranges, same bytes.
      assert.deepEqual(fromNpy.bytes, fromArrays.bytes);
      assert.ok((await mnistAccuracy(fromImages.bytes)).accuracy > 0.97);

      fs.writeFileSync(path.join(dir, 'wrong.npy'), writeNpyFloat32([10, 28, 28, 1], new Float32Array(7840)));
      await assert.rejects(optimizeModel(original, { precision: 'int8', calibration: path.join(dir, 'wrong.npy') }), (err: unknown) => {
        assert.ok(err instanceof CalibrationError);
        assert.match(err.message, /sample shape \[28, 28, 1\].*input 'image' expects \[N, 1, 28, 28\]/);
        return true;
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses calibration data of the wrong shape, naming the expected shape', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    await assert.rejects(optimizeModel(original, { precision: 'int8', calibration: [new Float32Array(100)] }), (err: unknown) => {
      assert.ok(err instanceof CalibrationError);
      assert.equal(err.message, "calibration sample 0 has 100 values; input 'image' expects [N, 1, 28, 28] (784 values per sample): give a multiple of 784");
      return true;
    });
    await assert.rejects(
      optimizeModel(original, { precision: 'int8', calibration: [{ data: new Float32Array(3 * 784), dims: [1, 3, 28, 28] }] }),
      /sample shape \[3, 28, 28\]; input 'image' expects \[N, 1, 28, 28\]/,
    );
    await assert.rejects(optimizeModel(original, { precision: 'int8', calibration: '/nonexistent/calib' }), /does not exist/);
    await assert.rejects(optimizeModel(original, { precision: 'int8' }), (err: unknown) => err instanceof OptimizeOptionsError && /needs calibration data/.test(err.message));
  });

  it('refuses INT8 for an NCS2 with the reason', async function () {
    await assert.rejects(optimizeModel(fs.readFileSync(MNIST_MODEL), { precision: 'int8', target: 'ncs2', calibration: loadMnist().calibration }), (err: unknown) => {
      assert.ok(err instanceof OptimizeOptionsError);
      assert.match(err.message, /Myriad X computes in FP16 only/);
      assert.match(err.message, /Unsupported Layer Type FakeQuantize/);
      return true;
    });
    const { report } = await optimizeModel(fs.readFileSync(MNIST_MODEL), { target: 'ncs2' });
    assert.equal(report.precision, 'fp16');
  });

  it('lists unsupported opsets, custom operators and already-quantized models', async function () {
    const calibration = syntheticImages(2, 1, 8);
    // Older opsets are raised to 13 where the meaning is kept (refusals: test/optimizer/opset-upgrade.test.ts).
    const raised = await optimizeModel(smallConvModel(11), { precision: 'int8', calibration });
    assert.equal(raised.report.opset, 13);
    assert.ok(raised.report.notes.some((n) => n.startsWith('opset 11 raised to 13 for INT8')), raised.report.notes.join('\n'));
    const perTensor = await optimizeModel(smallConvModel(11), { precision: 'int8', calibration, perChannel: false });
    assert.equal(perTensor.report.quantized[0].op, 'Conv');
    assert.equal(perTensor.report.opset, 11, 'per-tensor INT8 runs at opset 10 and up as it is');
    await assert.rejects(optimizeModel(smallConvModel(17), { precision: 'fp16', calibration }), /apply to precision int8 only/);
    await assert.rejects(optimizeModel(smallConvModel(17, 'custom'), { precision: 'fp16' }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError);
      assert.deepEqual(err.items, ['org.example.MyOp']);
      return true;
    });
    const q = await optimizeModel(smallConvModel(17), { precision: 'int8', calibration });
    await assert.rejects(optimizeModel(q.bytes, { precision: 'int8', calibration }), /already quantized \(QuantizeLinear, DequantizeLinear\)/);
    const model = decodeModel(q.bytes);
    assert.ok((model.graph?.node ?? []).some((n) => n.opType === 'DequantizeLinear' && (n.attribute ?? []).some((a) => a.name === 'axis')));
  });
});
