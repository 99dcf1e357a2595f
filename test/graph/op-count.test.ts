import { strict as assert } from 'assert';
import * as ort from 'onnxruntime-node';
import { buildMlp, buildMobileNetLike } from '../../src/engine/graph/builder';
import { readModelInfo } from '../../src/engine/graph/model-info';
import { countModelOps, countOps, exposeIntermediates, probeShapes } from '../../src/engine/graph/op-count';
import {
  DataType,
  IGraphProto,
  ITensorProto,
  decodeModel,
  encodeModel,
  makeFloatTensor,
  makeModel,
  makeNode,
  makeUint8Tensor,
  makeValueInfo,
} from '../../src/engine/graph/onnx';

function constant(name: string, dims: number[], value = 0.1): ITensorProto {
  return makeFloatTensor(name, dims, new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(value));
}

/** One Conv node: x [1, c, h, w] -> y, weight [m, c/group, 3, 3], pad 1. */
function convModel(c: number, h: number, m: number, group: number, stride: number, bias: boolean): Uint8Array {
  const out = Math.floor((h + 2 - 3) / stride) + 1;
  const inputs = ['x', 'w', ...(bias ? ['b'] : [])];
  const graph: IGraphProto = {
    name: 'conv',
    node: [makeNode('Conv', inputs, ['y'], { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [stride, stride] }, group: { int: group } })],
    initializer: [constant('w', [m, c / group, 3, 3]), ...(bias ? [constant('b', [m])] : [])],
    input: [makeValueInfo('x', DataType.FLOAT, [1, c, h, h])],
    output: [makeValueInfo('y', DataType.FLOAT, [1, m, out, out])],
  };
  return encodeModel(makeModel(graph));
}

describe('graph/op-count', () => {
  const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10 });

  describe('exposeIntermediates', () => {
    it('adds every node output, or only the named ones', () => {
      const outputs = (bytes: Uint8Array): Array<string | null | undefined> => (decodeModel(bytes).graph?.output ?? []).map((o) => o.name);
      assert.deepEqual(outputs(exposeIntermediates(mlp)), ['output', 'fc0', 'relu0']);
      assert.deepEqual(outputs(exposeIntermediates(mlp, ['relu0'])), ['output', 'relu0']);
      // The added outputs are name-only: onnxruntime infers their types, readModelInfo says it cannot.
      assert.throws(() => readModelInfo(exposeIntermediates(mlp)), /output 'fc0': expected a tensor type, got no type/);
      assert.throws(() => exposeIntermediates(mlp, ['nope']), /not produced by any node: nope/);
    });

    it('name-only outputs of every element type are accepted by onnxruntime-node', async () => {
      // float32, int64 (Shape), uint8 (QuantizeLinear), int32 (MatMulInteger), bool (Greater)
      const graph: IGraphProto = {
        name: 'types',
        node: [
          makeNode('Relu', ['x'], ['r']),
          makeNode('Shape', ['x'], ['s']),
          makeNode('QuantizeLinear', ['x', 'scale', 'zp'], ['q']),
          makeNode('MatMulInteger', ['q', 'qw'], ['acc']),
          makeNode('Greater', ['x', 'scale'], ['g']),
          makeNode('Identity', ['r'], ['y']),
        ],
        initializer: [makeFloatTensor('scale', [], [0.1]), makeUint8Tensor('zp', [], [128]), makeUint8Tensor('qw', [3, 2], [1, 2, 3, 4, 5, 6])],
        input: [makeValueInfo('x', DataType.FLOAT, [2, 3])],
        output: [makeValueInfo('y', DataType.FLOAT, [2, 3])],
      };
      const session = await ort.InferenceSession.create(exposeIntermediates(encodeModel(makeModel(graph))), { logSeverityLevel: 3 });
      try {
        const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([-1, 0, 1, 2, 3, 4]), [2, 3]) });
        const types = Object.fromEntries(Object.entries(out).map(([k, t]) => [k, `${t.type}[${t.dims.join(',')}]`]));
        assert.deepEqual(types, { y: 'float32[2,3]', r: 'float32[2,3]', s: 'int64[2]', q: 'uint8[2,3]', acc: 'int32[2,2]', g: 'bool[2,3]' });
      } finally {
        await session.release();
      }
    });
  });

  describe('probeShapes', () => {
    it('returns inputs, intermediates, outputs and initializers; symbolic dims default to 1', async () => {
      const shapes = await probeShapes(mlp);
      assert.deepEqual(shapes.get('input'), [1, 784]);
      assert.deepEqual(shapes.get('fc0'), [1, 128]);
      assert.deepEqual(shapes.get('relu0'), [1, 128]);
      assert.deepEqual(shapes.get('output'), [1, 10]);
      assert.deepEqual(shapes.get('fc0.weight'), [784, 128]);
      assert.deepEqual(shapes.get('fc1.bias'), [10]);
    });

    it('uses the shapes it is given', async () => {
      const shapes = await probeShapes(mlp, { input: [3, 784] });
      assert.deepEqual(shapes.get('output'), [3, 10]);
      await assert.rejects(probeShapes(mlp, { image: [1, 784] }), /unknown inputs: image/);
    });
  });

  describe('countOps', () => {
    it('counts the MLP 784-128-10 by hand', async () => {
      const c = await countModelOps(mlp);
      const macs = 784 * 128 + 128 * 10; // two Gemms
      const biasAdds = 128 + 10; // one op per Gemm output element for C
      const relus = 128;
      assert.equal(c.macs, macs);
      assert.equal(c.total, 2 * macs + biasAdds + relus); // 203530
      assert.deepEqual(c.byOpType, { Gemm: 2 * macs + biasAdds, Relu: relus });
      assert.deepEqual(c.unknownOps, []);
      assert.deepEqual(c.inputShapes, { input: [1, 784] });
      // Ops scale with the batch given.
      assert.equal((await countModelOps(mlp, { input: [4, 784] })).total, 4 * c.total);
    });

    it('counts a 3x3 Conv with padding by hand', async () => {
      // 1x3x8x8 -> 4 filters 3x3, pad 1 -> 1x4x8x8; each output needs 3*3*3 MACs.
      const outputs = 4 * 8 * 8;
      const withBias = await countModelOps(convModel(3, 8, 4, 1, 1, true));
      assert.equal(withBias.macs, outputs * 3 * 3 * 3); // 6912
      assert.equal(withBias.total, 2 * 6912 + outputs); // 14080, bias add per output
      assert.equal((await countModelOps(convModel(3, 8, 4, 1, 1, false))).total, 2 * 6912);
    });

    it('counts a depthwise Conv by hand', async () => {
      // 1x8x16x16, group 8, stride 2, pad 1 -> 1x8x8x8; each output needs 1*3*3 MACs.
      const outputs = 8 * 8 * 8;
      const c = await countModelOps(convModel(8, 16, 8, 8, 2, true));
      assert.equal(c.macs, outputs * 9); // 4608
      assert.equal(c.total, 2 * 4608 + outputs); // 9728
    });

    it('counts pooling, softmax, batch norm; zero-cost ops are known, others are reported', () => {
      const graph: IGraphProto = {
        name: 'misc',
        node: [
          makeNode('BatchNormalization', ['x', 'g', 'b', 'm', 'v'], ['bn']),
          makeNode('MaxPool', ['bn'], ['mp'], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } }),
          makeNode('GlobalAveragePool', ['mp'], ['gap']),
          makeNode('Flatten', ['gap'], ['flat']),
          makeNode('Softmax', ['flat'], ['sm']),
          makeNode('LRN', ['x'], ['lrn'], { size: { int: 3 } }),
        ],
        initializer: [constant('g', [4], 1), constant('b', [4], 0), constant('m', [4], 0), constant('v', [4], 1)],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 4, 8, 8])],
        output: [makeValueInfo('sm', DataType.FLOAT, [1, 4]), makeValueInfo('lrn', DataType.FLOAT, [1, 4, 8, 8])],
      };
      const shapes = new Map<string, number[]>([
        ['x', [1, 4, 8, 8]], ['bn', [1, 4, 8, 8]], ['mp', [1, 4, 4, 4]], ['gap', [1, 4, 1, 1]],
        ['flat', [1, 4]], ['sm', [1, 4]], ['lrn', [1, 4, 8, 8]],
      ]);
      const c = countOps(encodeModel(makeModel(graph)), shapes);
      assert.deepEqual(c.byOpType, {
        BatchNormalization: 2 * 256, // scale + shift per element
        MaxPool: 64 * 4, // 2x2 window per output element
        GlobalAveragePool: 64, // one per input element
        Flatten: 0,
        Softmax: 5 * 4, // max, subtract, exp, sum, divide per element
      });
      assert.equal(c.total, 512 + 256 + 64 + 20);
      assert.deepEqual(c.unknownOps, ['LRN']);
    });

    it('puts the MobileNet-like CNN at about 0.6 GOPs at 224x224', async function () {
      this.timeout(20000);
      const c = await countModelOps(buildMobileNetLike({ seed: 1 }));
      assert.deepEqual(c.inputShapes, { input: [1, 3, 224, 224] });
      assert.deepEqual(c.unknownOps, []);
      assert.ok(c.total > 0.3e9 && c.total < 1.2e9, `total ${c.total}`);
      assert.ok(c.macs > 0.25e9 && c.macs < 0.35e9, `macs ${c.macs}`); // MobileNetV2 is ~300 M MACs
    });
  });
});
