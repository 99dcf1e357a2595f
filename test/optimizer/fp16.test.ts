import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as ort from 'onnxruntime-node';
import { buildMobileNetLike } from '../../src/engine/graph/builder';
import { DataType, decodeModel, encodeModel, makeFloatTensor, makeModel, makeNode, makeValueInfo, IGraphProto } from '../../src/engine/graph/onnx';
import { readModelInfo } from '../../src/engine/graph/model-info';
import { FP32_ONLY_OPS, ORT_CPU_FP16_KERNELS, UnsupportedModelError, optimizeModel } from '../../src/engine/graph/optimizer';
import { fromHalfBits, toHalfBits } from '../../src/engine/graph/optimizer/half';
import { MNIST_MODEL, mnistAccuracy, relativeError, runOnce, syntheticImages, withFloat16Boundaries } from './helpers';

describe('optimizer: FP16', function () {
  this.timeout(60000);

  it('converts float32 <-> float16 bits with round-half-to-even, subnormals and saturation', function () {
    assert.equal(toHalfBits(1), 0x3c00);
    assert.equal(toHalfBits(-2), 0xc000);
    assert.equal(toHalfBits(65504), 0x7bff);
    assert.equal(toHalfBits(65520), 0x7c00); // rounds up to infinity
    assert.equal(toHalfBits(2 ** -24), 0x0001); // smallest subnormal
    assert.equal(toHalfBits(2 ** -25), 0x0000); // halfway to zero: ties to even
    assert.equal(toHalfBits(1 + 2 ** -11), 0x3c00); // halfway between 1 and next: even (1)
    assert.equal(toHalfBits(1 + 3 * 2 ** -11), 0x3c02); // halfway, odd below: rounds up
    assert.ok(Number.isNaN(fromHalfBits(toHalfBits(NaN))));
    for (const v of [0.1, -3.14159, 1000.5, 6.1e-5, 1e-7]) {
      const back = fromHalfBits(toHalfBits(v));
      assert.ok(Math.abs(back - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25, `${v} -> ${back}`);
    }
  });

  it('MNIST: float16 weights, float32 I/O, outputs within 1e-2 relative and the same accuracy', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const { bytes, report } = await optimizeModel(original, { precision: 'fp16' });
    const info = readModelInfo(bytes);
    assert.equal(info.precision, 'fp16');
    assert.deepEqual(info.inputs.map((i) => i.type), ['float32']);
    assert.deepEqual(info.outputs.map((o) => o.type), ['float32']);
    assert.ok(bytes.length < original.length * 0.55, `size ${bytes.length} vs ${original.length}`);
    assert.equal(report.quantized.length, 10);
    assert.deepEqual(report.keptFloat, []);
    assert.equal(report.castsInserted, 2, 'one Cast at the input edge, one at the output edge');
    const fp32 = await mnistAccuracy(original);
    // Every intermediate rounded to float16, as a float16 device computes.
    const fp16 = await mnistAccuracy(withFloat16Boundaries(bytes), 'disabled');
    const err = relativeError(fp32.logits, fp16.logits);
    console.log(`      MNIST fp32 ${(fp32.accuracy * 100).toFixed(2)} %, fp16 ${(fp16.accuracy * 100).toFixed(2)} %, fp16 relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-2, `relative error ${err}`);
    assert.ok(Math.abs(fp16.accuracy - fp32.accuracy) <= 0.001);
  });

  it('MobileNet-like CNN (224): outputs within 1e-2 relative of float32', async function () {
    const original = buildMobileNetLike({ inputSize: 224 });
    const { bytes, report } = await optimizeModel(original, { precision: 'fp16' });
    assert.equal(report.keptFloat.length, 0);
    const x = syntheticImages(2, 3, 224);
    const data = new Float32Array(2 * 3 * 224 * 224);
    data.set(x[0], 0);
    data.set(x[1], x[0].length);
    const feeds = { input: new ort.Tensor('float32', data, [2, 3, 224, 224]) };
    const a = (await runOnce(original, feeds)).logits.data as Float32Array;
    const b = (await runOnce(withFloat16Boundaries(bytes), feeds, 'disabled')).logits.data as Float32Array;
    const err = relativeError(a, b);
    console.log(`      MobileNet-like fp16 relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-2, `relative error ${err}`);
  });

  it('fp16Io makes inputs and outputs float16 (half the transfer bytes)', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const { bytes } = await optimizeModel(original, { precision: 'fp16', fp16Io: true });
    const info = readModelInfo(bytes);
    assert.deepEqual(info.inputs.map((i) => i.type), ['float16']);
    assert.deepEqual(info.outputs.map((o) => o.type), ['float16']);
    const x = syntheticImages(1, 1, 28)[0];
    const half = Uint16Array.from(x, (v) => toHalfBits(v));
    const out = await runOnce(bytes, { image: new ort.Tensor('float16', half, [1, 1, 28, 28]) });
    assert.equal(out.logits.type, 'float16');
    const ref = (await runOnce(original, { image: new ort.Tensor('float32', x, [1, 1, 28, 28]) })).logits.data as Float32Array;
    const got = Array.from(out.logits.data as Uint16Array, fromHalfBits);
    assert.ok(relativeError(ref, got) < 1e-2);
  });

  it('keeps float32-only operators (Resize, Softmax) in float32 with shared Casts, and the model still matches', async function () {
    // Conv -> Resize -> Conv -> Softmax: Resize and Softmax stay float32.
    const w1 = makeFloatTensor('w1', [4, 3, 3, 3], Array.from({ length: 108 }, (_, i) => Math.sin(i) * 0.3));
    const w2 = makeFloatTensor('w2', [2, 4, 1, 1], Array.from({ length: 8 }, (_, i) => Math.cos(i) * 0.5));
    const scales = makeFloatTensor('scales', [4], [1, 1, 2, 2]);
    const graph: IGraphProto = {
      name: 'resize_softmax',
      node: [
        makeNode('Conv', ['x', 'w1'], ['c1'], { pads: { ints: [1, 1, 1, 1] } }),
        makeNode('Resize', ['c1', '', 'scales'], ['r'], { mode: { string: 'linear' } }),
        makeNode('Conv', ['r', 'w2'], ['c2']),
        makeNode('Softmax', ['c2'], ['y'], { axis: { int: 1 } }),
      ],
      initializer: [w1, w2, scales],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 3, 8, 8])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 2, 16, 16])],
    };
    const original = encodeModel(makeModel(graph));
    const { bytes, report } = await optimizeModel(original, { precision: 'fp16' });
    assert.deepEqual(report.keptFloat.map((k) => k.op).sort(), ['Resize', 'Softmax']);
    assert.equal(report.keptFloat.find((k) => k.op === 'Resize')?.reason, FP32_ONLY_OPS.Resize);
    // x->fp16, c1->fp32 (Resize), r->fp16, c2->fp32 (Softmax); y stays float32: 4 Casts.
    assert.equal(report.castsInserted, 4);
    const model = decodeModel(bytes);
    const scalesInit = (model.graph?.initializer ?? []).find((t) => t.name === 'scales');
    assert.equal(scalesInit?.dataType, DataType.FLOAT, 'Resize scales stay float32');
    const x = syntheticImages(1, 3, 8)[0];
    const feeds = { x: new ort.Tensor('float32', x, [1, 3, 8, 8]) };
    const a = (await runOnce(original, feeds)).y.data as Float32Array;
    const b = (await runOnce(bytes, feeds)).y.data as Float32Array;
    assert.ok(relativeError(a, b) < 1e-2);
  });

  it('refuses models with subgraphs, listing the nodes', async function () {
    const branch = (v: number): IGraphProto => ({
      name: `b${v}`,
      node: [makeNode('Constant', [], [`o${v}`], { value: { tensor: makeFloatTensor(`t${v}`, [1], [v]) } })],
      output: [makeValueInfo(`o${v}`, DataType.FLOAT, [1])],
    });
    const graph: IGraphProto = {
      name: 'with_if',
      node: [
        makeNode('ReduceMax', ['x'], ['m'], { keepdims: { int: 0 } }),
        makeNode('Greater', ['m', 'zero'], ['cond']),
        { opType: 'If', input: ['cond'], output: ['y'], name: 'the_if', attribute: [
          { name: 'then_branch', type: 5, g: branch(1) },
          { name: 'else_branch', type: 5, g: branch(0) },
        ] },
      ],
      initializer: [makeFloatTensor('zero', [], [0])],
      input: [makeValueInfo('x', DataType.FLOAT, [4])],
      output: [makeValueInfo('y', DataType.FLOAT, [1])],
    };
    await assert.rejects(optimizeModel(encodeModel(makeModel(graph)), { precision: 'fp16' }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError);
      assert.match(err.message, /subgraphs/);
      assert.deepEqual(err.items, ["If 'the_if'"]);
      return true;
    });
  });

  it("ORT_CPU_FP16_KERNELS matches what onnxruntime's CPU provider runs natively in float16", async function () {
    // One-node float16 models: onnxruntime inserts Casts around ops it has no float16 kernel for.
    const cases: Array<[string, string[], number[], Record<string, unknown>]> = [
      ['Transpose', ['x'], [1, 4, 8, 8], {}],
      ['Clip', ['x'], [1, 4, 8, 8], {}],
      ['Relu', ['x'], [1, 4, 8, 8], {}],
      ['MaxPool', ['x'], [1, 4, 8, 8], { kernel_shape: { ints: [2, 2] } }],
      ['Add', ['x', 'x'], [1, 4, 8, 8], {}],
    ];
    for (const [op, inputs, dims, attrs] of cases) {
      const graph: IGraphProto = {
        name: op,
        node: [makeNode(op, inputs, ['y'], attrs as Parameters<typeof makeNode>[3])],
        input: [makeValueInfo('x', DataType.FLOAT16, dims)],
        output: [{ name: 'y' }],
      };
      const { runtime } = (await optimizeModel(encodeModel(makeModel(graph)), { precision: 'fp32' })).report;
      const casts = runtime?.ops.Cast ?? 0;
      assert.equal(casts === 0, ORT_CPU_FP16_KERNELS.has(op), `${op}: onnxruntime inserted ${casts} Casts`);
    }
  });
});
