import { strict as assert } from 'assert';
import * as ort from 'onnxruntime-node';
import { halfBitsToFloat, prepareFp16Model, roundToFp16, toHalfBits } from '../../src/engine/devices/sim-ncs2/fp16';
import { DataType, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { parseModel } from '../../src/engine/graph/model-info';
import { buildGemm, buildMlp, mulberry32 } from '../../src/engine/graph/builder';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { buildScale } from './models';

describe('sim-ncs2 FP16 precision', function () {
  it('rounds float32 to FP16 exactly as onnxruntime casts (nearest, ties to even, subnormals, overflow)', async function () {
    const rand = mulberry32(3);
    const values = [0, -0, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 2 ** -25 * 1.5, 6e-8, 1e-10, Infinity, -Infinity];
    for (let i = 0; i < 2000; i++) values.push((rand() * 2 - 1) * 10 ** Math.floor(rand() * 14 - 8));
    const model = encodeModel(
      makeModel({
        name: 'cast',
        node: [makeNode('Cast', ['x'], ['h'], { to: { int: DataType.FLOAT16 } }), makeNode('Cast', ['h'], ['y'], { to: { int: DataType.FLOAT } })],
        input: [makeValueInfo('x', DataType.FLOAT, [values.length])],
        output: [makeValueInfo('y', DataType.FLOAT, [values.length])],
      }),
    );
    const session = await ort.InferenceSession.create(model);
    const input = Float32Array.from(values);
    const out = (await session.run({ x: new ort.Tensor('float32', input, [input.length]) })).y.data as Float32Array;
    for (let i = 0; i < input.length; i++) {
      assert.ok(Object.is(roundToFp16(input[i]), out[i]) || roundToFp16(input[i]) === out[i], `${input[i]}: ours ${roundToFp16(input[i])}, onnxruntime ${out[i]}`);
    }
    assert.ok(Number.isNaN(halfBitsToFloat(toHalfBits(NaN))));
    await session.release();
  });

  it('rounds the weights without touching the caller\'s model bytes, and refuses INT8 with the stick\'s message', function () {
    const original = buildMlp({ inputSize: 8, hidden: [4], outputSize: 2, seed: 5 });
    const copy = original.slice();
    const prepared = prepareFp16Model(original);
    assert.deepEqual(original, copy, 'model bytes unchanged');
    const w = parseModel(prepared).graph!.initializer!.find((t) => t.name === 'fc0.weight')!;
    const view = new DataView(w.rawData!.buffer, w.rawData!.byteOffset, w.rawData!.byteLength);
    for (let i = 0; i < w.rawData!.byteLength; i += 4) {
      const v = view.getFloat32(i, true);
      assert.equal(v, roundToFp16(v), 'every weight is FP16-representable');
    }
    assert.throws(() => prepareFp16Model(buildGemm({ m: 1, k: 8, n: 8, precision: 'int8' })), /Unsupported Layer Type FakeQuantize: .*INT8.*FP16 only/);
  });

  it('a simulated stick returns real outputs with FP16 inputs and outputs; an INT8 graph fails to load', async function () {
    const registry = new StickRegistry();
    const stick = new SimNcs2Device({ id: 'fp16-stick', registry });
    const engine = new InferenceEngine({ devices: [stick] });
    try {
      const g = await engine.loadGraph(buildScale(3, 1));
      const x = new Float32Array([1 + 2 ** -12, 1000.3, 3.14159265]);
      const r = await engine.submit(g, { x: { type: 'float32', dims: [1, 3], data: x } });
      assert.deepEqual(Array.from(r.outputs.y.data as Float32Array), [1, 1000.5, 3.140625]);
      await assert.rejects(engine.loadGraph(buildGemm({ m: 1, k: 8, n: 8, precision: 'int8' })), /Unsupported Layer Type FakeQuantize/);
    } finally {
      await engine.close();
    }
  });
});
