import { strict as assert } from 'assert';
import { buildGemm, buildMlp, buildMobileNetLike, mulberry32 } from '../../src/engine/graph/builder';
import { ModelFormatError, hashModel, readModelInfo } from '../../src/engine/graph/model-info';
import {
  DataType,
  IValueInfoProto,
  encodeModel,
  makeFloatTensor,
  makeModel,
  makeNode,
  makeValueInfo,
} from '../../src/engine/graph/onnx';

function randomBytes(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
}

function assertFormatError(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => readModelInfo(bytes),
    (err: unknown) => {
      assert.ok(err instanceof ModelFormatError, `expected ModelFormatError, got ${String(err)}`);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'ModelFormatError');
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe('graph/model-info', () => {
  const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10 });

  describe('readModelInfo', () => {
    it('describes the MLP', () => {
      const info = readModelInfo(mlp);
      assert.deepEqual(info.inputs, [{ name: 'input', type: 'float32', dims: ['N', 784] }]);
      assert.deepEqual(info.outputs, [{ name: 'output', type: 'float32', dims: ['N', 10] }]);
      assert.equal(info.opsetVersion, 17);
      assert.equal(info.irVersion, 8);
      assert.match(info.producer, /^node-red-ncs2-graph/);
      assert.equal(info.nodeCount, 3);
      assert.deepEqual(info.opTypes, { Gemm: 2, Relu: 1 });
      // float32 weights + biases of both layers
      assert.equal(info.weightBytes, 4 * (784 * 128 + 128 + 128 * 10 + 10));
      assert.equal(info.precision, 'fp32');
    });

    it('describes the MobileNet-like CNN (initializers are not inputs)', () => {
      const info = readModelInfo(buildMobileNetLike({ inputSize: 96, numClasses: 10 }));
      assert.deepEqual(info.inputs, [{ name: 'input', type: 'float32', dims: ['N', 3, 96, 96] }]);
      assert.deepEqual(info.outputs, [{ name: 'logits', type: 'float32', dims: ['N', 10] }]);
      assert.equal(info.opTypes.Conv, 52);
      assert.equal(info.opTypes.Add, 10);
      assert.equal(info.precision, 'fp32');
    });

    it('reports int8 precision for the QDQ GEMM', () => {
      const info = readModelInfo(buildGemm({ m: 16, k: 32, n: 8, precision: 'int8' }));
      assert.equal(info.precision, 'int8');
      assert.deepEqual(info.inputs, [{ name: 'input', type: 'float32', dims: [16, 32] }]);
      // int8 weight, per-column float scale and int8 zero point, activation scale and zero point
      assert.equal(info.weightBytes, 32 * 8 + 8 * 4 + 8 + 4 + 1);
    });

    it('maps element types, unknown dims and fp16 weights; skips initializers listed as inputs', () => {
      const half = { name: 'w16', dims: [4], dataType: DataType.FLOAT16, rawData: new Uint8Array(8) };
      const unknownDim: IValueInfoProto = { name: 'mask', type: { tensorType: { elemType: DataType.BOOL, shape: { dim: [{}, { dimValue: 3 }] } } } };
      const graph = {
        name: 'types',
        node: [
          makeNode('Cast', ['w16'], ['w32'], { to: { int: DataType.FLOAT } }),
          makeNode('Identity', ['ids'], ['ids_out']),
          makeNode('Identity', ['mask'], ['mask_out']),
          makeNode('Identity', ['bias'], ['bias_out']),
        ],
        initializer: [half, makeFloatTensor('bias', [1], [0])],
        // IR 3 style: the initializer 'bias' is also declared as a graph input.
        input: [makeValueInfo('ids', DataType.INT64, ['batch', 'seq']), unknownDim, makeValueInfo('bias', DataType.FLOAT, [1])],
        output: [
          makeValueInfo('w32', DataType.FLOAT, [4]),
          makeValueInfo('ids_out', DataType.INT64, ['batch', 'seq']),
          makeValueInfo('mask_out', DataType.BOOL, ['?', 3]),
          makeValueInfo('bias_out', DataType.FLOAT, [1]),
        ],
      };
      const info = readModelInfo(encodeModel(makeModel(graph)));
      assert.deepEqual(info.inputs, [
        { name: 'ids', type: 'int64', dims: ['batch', 'seq'] },
        { name: 'mask', type: 'bool', dims: ['?', 3] },
      ]);
      assert.deepEqual(info.outputs.map((o) => o.type), ['float32', 'int64', 'bool', 'float32']);
      assert.equal(info.weightBytes, 8 + 4);
      assert.equal(info.precision, 'fp16');
    });
  });

  describe('ModelFormatError', () => {
    it('rejects an empty buffer', () => {
      assertFormatError(new Uint8Array(0), /empty/);
    });

    it('rejects random bytes', () => {
      for (let seed = 1; seed <= 20; seed++) {
        assertFormatError(randomBytes(64 + seed * 97, seed), /not an ONNX model|no graph/);
      }
    });

    it('rejects truncated model bytes', () => {
      for (const fraction of [0.01, 0.1, 0.25, 0.5, 0.75, 0.99]) {
        assertFormatError(mlp.subarray(0, Math.floor(mlp.length * fraction)), /not an ONNX model|no graph/);
      }
      assertFormatError(mlp.subarray(0, mlp.length - 1), /not an ONNX model|no graph/);
    });

    it('says where decoding failed', () => {
      assertFormatError(mlp.subarray(0, 1000), /protobuf decode failed at byte \d+ of 1000/);
    });

    it('rejects non-ONNX files and models without a graph', () => {
      assertFormatError(new TextEncoder().encode('{"model": "not really"}\n'), /not an ONNX model/);
      assertFormatError(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), /not an ONNX model/);
      assertFormatError(encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }] }), /ONNX model has no graph/);
    });
  });

  describe('hashModel', () => {
    it('is the sha256 hex digest', () => {
      assert.equal(hashModel(new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
      assert.equal(hashModel(new TextEncoder().encode('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    });

    it('follows the seed', () => {
      const spec = { inputSize: 16, hidden: [4], outputSize: 2 };
      assert.equal(hashModel(buildMlp({ ...spec, seed: 1 })), hashModel(buildMlp({ ...spec, seed: 1 })));
      assert.notEqual(hashModel(buildMlp({ ...spec, seed: 1 })), hashModel(buildMlp({ ...spec, seed: 2 })));
    });
  });
});
