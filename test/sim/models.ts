/**
 * Models for the simulated-stick tests, generated (no downloads).
 */
import { DataType, encodeModel, makeFloatTensor, makeInt64Tensor, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { mulberry32 } from '../../src/engine/graph/builder';

/**
 * A camera-frame classifier that is cheap for the host but keeps a stick's USB link busy: a
 * size x size RGB frame arrives as uint8 (640: 1.2 MB, 20 ms on USB 2, 2.7 ms on USB 3), is subsampled 8x by
 * Reshape/Slice (contiguous row copies, then a strided Slice of those rows), then one 3x3 convolution, global pooling and a 10-way Gemm (0.35 MFLOP). The
 * host spends tens of microseconds per frame (a memory copy and a tiny network), the simulated
 * stick milliseconds, so N sticks can be measured without the host becoming the limit.
 */
export function buildFrameClassifier(size = 640): Uint8Array {
  if (size % 8 !== 0) throw new RangeError(`size must be a multiple of 8, got ${size}`);
  const rand = mulberry32(7);
  const w = Float32Array.from({ length: 8 * 3 * 9 }, () => (rand() * 2 - 1) * 0.05);
  const fc = Float32Array.from({ length: 8 * 10 }, () => (rand() * 2 - 1) * 0.5);
  const rows = size / 8;
  const inits = [
    // Every 8th row: view [1,3,rows,8,size] and keep index 0 of the 8 (contiguous copies, cheap).
    makeInt64Tensor('rows.shape', [5], [1, 3, rows, 8, size]),
    makeInt64Tensor('rows.starts', [1], [0]),
    makeInt64Tensor('rows.ends', [1], [1]),
    makeInt64Tensor('rows.axes', [1], [3]),
    makeInt64Tensor('plane.shape', [4], [1, 3, rows, size]),
    // then every 8th column of those rows
    makeInt64Tensor('cols.starts', [1], [0]),
    makeInt64Tensor('cols.ends', [1], [size]),
    makeInt64Tensor('cols.axes', [1], [3]),
    makeInt64Tensor('cols.steps', [1], [8]),
    makeFloatTensor('scale', [], [1 / 255]),
    makeFloatTensor('conv.w', [8, 3, 3, 3], w),
    makeFloatTensor('conv.b', [8], new Float32Array(8).fill(0.01)),
    makeFloatTensor('fc.w', [8, 10], fc),
    makeFloatTensor('fc.b', [10], new Float32Array(10)),
  ];
  const nodes = [
    makeNode('Reshape', ['frame', 'rows.shape'], ['rows5']),
    makeNode('Slice', ['rows5', 'rows.starts', 'rows.ends', 'rows.axes'], ['rows1']),
    makeNode('Reshape', ['rows1', 'plane.shape'], ['plane']),
    makeNode('Slice', ['plane', 'cols.starts', 'cols.ends', 'cols.axes', 'cols.steps'], ['small']),
    makeNode('Cast', ['small'], ['smallf'], { to: { int: DataType.FLOAT } }),
    makeNode('Mul', ['smallf', 'scale'], ['x']),
    makeNode('Conv', ['x', 'conv.w', 'conv.b'], ['c'], { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } }),
    makeNode('Relu', ['c'], ['r']),
    makeNode('GlobalAveragePool', ['r'], ['p']),
    makeNode('Flatten', ['p'], ['f']),
    makeNode('Gemm', ['f', 'fc.w', 'fc.b'], ['scores']),
  ];
  const graph = {
    name: 'frame_classifier',
    node: nodes,
    initializer: inits,
    input: [makeValueInfo('frame', DataType.UINT8, [1, 3, size, size])],
    output: [makeValueInfo('scores', DataType.FLOAT, [1, 10])],
  };
  return encodeModel(makeModel(graph));
}

/** A float identity-ish model (y = x * 1): shows the FP16 round trip on inputs and outputs. */
export function buildScale(n: number, factor = 1): Uint8Array {
  const graph = {
    name: 'scale',
    node: [makeNode('Mul', ['x', 'k'], ['y'])],
    initializer: [makeFloatTensor('k', [], [factor])],
    input: [makeValueInfo('x', DataType.FLOAT, [1, n])],
    output: [makeValueInfo('y', DataType.FLOAT, [1, n])],
  };
  return encodeModel(makeModel(graph));
}
