/**
 * Shape probing and arithmetic-op counting for ONNX models.
 *
 * Shapes come from one real onnxruntime run with every intermediate exposed as
 * a graph output, rather than from a re-implementation of ONNX shape
 * inference: the runtime is the authority on what it computes.
 */
import * as ort from 'onnxruntime-node';
import { IGraphProto, INodeProto, IValueInfoProto, encodeModel, toNumber } from './onnx';
import { TensorType, parseModel, readModelInfo } from './model-info';
import { mulberry32 } from './builder';

/**
 * Returns the model with node outputs (all, or only `names`) appended as graph
 * outputs. onnxruntime 1.30 accepts graph outputs that carry only a name (it
 * infers their types; verified for float, uint8 and int32 outputs), so no type
 * derivation is needed; when the model's value_info already describes a
 * tensor that description is used as is.
 */
export function exposeIntermediates(bytes: Uint8Array, names?: string[]): Uint8Array {
  const model = parseModel(bytes);
  const graph = model.graph as IGraphProto;
  const produced = new Set<string>();
  for (const node of graph.node ?? []) for (const out of node.output ?? []) if (out) produced.add(out);
  const existing = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  if (names) {
    const missing = names.filter((n) => !produced.has(n) && !existing.has(n));
    if (missing.length > 0) throw new RangeError(`not produced by any node: ${missing.join(', ')}`);
  }
  const wanted = names ? new Set(names) : produced;
  const valueInfo = new Map<string, IValueInfoProto>((graph.valueInfo ?? []).map((vi) => [vi.name ?? '', vi]));
  const outputs = [...(graph.output ?? [])];
  // Node order keeps the added outputs in topological order, which callers may rely on.
  for (const node of graph.node ?? []) {
    for (const out of node.output ?? []) {
      if (!out || existing.has(out) || !wanted.has(out)) continue;
      outputs.push(valueInfo.get(out) ?? { name: out });
      existing.add(out);
    }
  }
  graph.output = outputs;
  return encodeModel(model);
}

/** Feeds for a shape probe: floats get deterministic values in [0, 1) (keeps Log/Sqrt/Div finite), integers zeros (always-valid indices). */
export function probeTensor(type: TensorType, dims: number[], rand: () => number): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from({ length: n }, rand), dims);
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from({ length: n }, rand), dims);
    case 'float16':
      // onnxruntime-node carries float16 as raw bit patterns; 0x3800 is 0.5.
      return new ort.Tensor('float16', new Uint16Array(n).fill(0x3800), dims);
    case 'int8':
      return new ort.Tensor('int8', new Int8Array(n), dims);
    case 'uint8':
      return new ort.Tensor('uint8', new Uint8Array(n), dims);
    case 'int16':
      return new ort.Tensor('int16', new Int16Array(n), dims);
    case 'uint16':
      return new ort.Tensor('uint16', new Uint16Array(n), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n), dims);
    case 'bool':
      return new ort.Tensor('bool', new Uint8Array(n), dims);
    case 'string':
      return new ort.Tensor('string', new Array<string>(n).fill(''), dims);
  }
}

/** Concrete input shapes: caller's shapes win, symbolic or unknown dims default to 1. */
function resolveInputShapes(bytes: Uint8Array, inputShapes: Record<string, number[]> = {}): Array<{ name: string; type: TensorType; dims: number[] }> {
  const inputs = readModelInfo(bytes).inputs;
  const unknown = Object.keys(inputShapes).filter((k) => !inputs.some((i) => i.name === k));
  if (unknown.length > 0) {
    throw new RangeError(`inputShapes names unknown inputs: ${unknown.join(', ')} (model inputs: ${inputs.map((i) => i.name).join(', ')})`);
  }
  return inputs.map((i) => ({
    name: i.name,
    type: i.type,
    dims: inputShapes[i.name] ?? i.dims.map((d) => (typeof d === 'number' ? d : 1)),
  }));
}

/**
 * One run of the model with intermediates exposed (all, or the named ones), single-threaded and
 * unoptimized so the graph runs as written. Returns each output's type and dims; the tensors are
 * released. Shared by op counting and the optimizer's calibration probes.
 */
export async function runExposed(bytes: Uint8Array, feeds: Record<string, ort.Tensor>, names?: string[]): Promise<Map<string, { type: string; dims: readonly number[] }>> {
  const session = await ort.InferenceSession.create(exposeIntermediates(bytes, names), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'disabled',
    logSeverityLevel: 3,
  });
  const out = new Map<string, { type: string; dims: readonly number[] }>();
  try {
    const results = await session.run(feeds);
    for (const [name, tensor] of Object.entries(results)) {
      out.set(name, { type: tensor.type, dims: [...tensor.dims] });
      tensor.dispose();
    }
  } finally {
    await session.release();
  }
  return out;
}

/**
 * Runs the model once (1 thread, no graph optimization, so the graph runs as
 * written) with every intermediate exposed and returns name -> dims for the
 * inputs, every node output and every initializer. Memory: all intermediates
 * of one inference are alive at once.
 */
export async function probeShapes(bytes: Uint8Array, inputShapes?: Record<string, number[]>): Promise<Map<string, number[]>> {
  const inputs = resolveInputShapes(bytes, inputShapes);
  const shapes = new Map<string, number[]>();
  const graph = parseModel(bytes).graph as IGraphProto;
  for (const t of graph.initializer ?? []) shapes.set(t.name ?? '', (t.dims ?? []).map((d) => toNumber(d)));

  const rand = mulberry32(0);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    feeds[i.name] = probeTensor(i.type, i.dims, rand);
    shapes.set(i.name, [...i.dims]);
  }
  for (const [name, tensor] of await runExposed(bytes, feeds)) shapes.set(name, [...tensor.dims]);
  return shapes;
}

export interface OpCount {
  /** Arithmetic ops (a multiply-accumulate counts 2). A lower bound when unknownOps is non-empty. */
  total: number;
  macs: number;
  byOpType: Record<string, number>;
  /** Op types with no cost rule (or whose shapes were missing); they count 0. */
  unknownOps: string[];
}

/** One op per output element. */
const ELEMENTWISE = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Mod', 'PRelu',
  'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Celu', 'ThresholdedRelu', 'Clip', 'Sigmoid', 'HardSigmoid', 'HardSwish',
  'Tanh', 'Softplus', 'Softsign', 'Gelu', 'Mish', 'Erf', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Neg', 'Abs',
  'Sign', 'Floor', 'Ceil', 'Round', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh',
  'Acosh', 'Atanh', 'IsNaN', 'IsInf', 'Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual',
  'And', 'Or', 'Xor', 'Not', 'Where', 'BitShift',
]);

/** Variadic: n inputs need n - 1 binary ops per output element. */
const VARIADIC = new Set(['Sum', 'Max', 'Min', 'Mean']);

/** One op per input element. */
const REDUCTIONS = new Set([
  'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool', 'ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin',
  'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare', 'ArgMax', 'ArgMin',
]);

/** Data movement, casts and constants: no arithmetic. */
const ZERO_COST = new Set([
  'Reshape', 'Flatten', 'Transpose', 'Concat', 'Split', 'Slice', 'Squeeze', 'Unsqueeze', 'Shape', 'Size',
  'Gather', 'GatherElements', 'GatherND', 'Scatter', 'ScatterElements', 'ScatterND', 'Expand', 'Tile', 'Pad',
  'Identity', 'Dropout', 'Cast', 'CastLike', 'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear',
  'Constant', 'ConstantOfShape', 'Range', 'NonZero', 'DepthToSpace', 'SpaceToDepth', 'ReverseSequence',
  'Trilu', 'EyeLike', 'OneHot', 'Compress', 'SplitToSequence', 'SequenceAt', 'SequenceConstruct',
  'SequenceLength', 'ConcatFromSequence', 'OptionalGetElement', 'OptionalHasElement',
]);

/**
 * Softmax / LogSoftmax: 5 ops per element (max search, subtract max, exp,
 * sum, divide - or subtract log-sum for LogSoftmax).
 */
const SOFTMAX_OPS_PER_ELEMENT = 5;
/** Inference BatchNormalization folds to y = x * a + b per channel: 2 ops per element. */
const BATCHNORM_OPS_PER_ELEMENT = 2;

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function intsAttr(node: INodeProto, name: string): number[] | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a?.ints ? a.ints.map((v) => toNumber(v)) : undefined;
}

function intAttr(node: INodeProto, name: string, dflt: number): number {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a && a.i !== null && a.i !== undefined ? toNumber(a.i) : dflt;
}

/** Cost of one node, or undefined when the op is unknown or a needed shape is missing. */
function nodeCost(node: INodeProto, shape: (name: string | undefined) => number[] | undefined): { ops: number; macs: number } | undefined {
  const op = node.opType ?? '';
  const ins = node.input ?? [];
  const present = (i: number): boolean => !!ins[i];
  const y = shape(node.output?.[0]);
  const macCost = (macs: number, biasAdds: number): { ops: number; macs: number } => ({ ops: 2 * macs + biasAdds, macs });

  if (ZERO_COST.has(op)) return { ops: 0, macs: 0 };
  if (!y) return undefined;
  switch (op) {
    case 'Conv':
    case 'ConvInteger':
    case 'QLinearConv': {
      // W is [M, C/group, k...]: each output element needs C/group * prod(k) MACs (grouped and depthwise included).
      const wIndex = op === 'QLinearConv' ? 3 : 1;
      const biasIndex = op === 'QLinearConv' ? 8 : op === 'Conv' ? 2 : -1;
      const w = shape(ins[wIndex]);
      if (!w) return undefined;
      return macCost(numel(y) * numel(w.slice(1)), biasIndex >= 0 && present(biasIndex) ? numel(y) : 0);
    }
    case 'ConvTranspose': {
      // W is [C, M/group, k...]: every input element scatters into M/group * prod(k) outputs.
      const x = shape(ins[0]);
      const w = shape(ins[1]);
      if (!x || !w) return undefined;
      return macCost(numel(x) * numel(w.slice(1)), present(2) ? numel(y) : 0);
    }
    case 'Gemm': {
      // alpha/beta scaling is not counted (usually 1).
      const a = shape(ins[0]);
      if (!a || a.length !== 2) return undefined;
      const k = intAttr(node, 'transA', 0) ? a[0] : a[1];
      return macCost(numel(y) * k, present(2) ? numel(y) : 0);
    }
    case 'MatMul':
    case 'MatMulInteger':
    case 'QLinearMatMul':
    case 'MatMulIntegerToFloat':
    case 'DynamicQuantizeMatMul': {
      // K is A's last dim (also right for 1-D A); batch dims are in numel(y).
      const a = shape(ins[0]);
      if (!a || a.length === 0) return undefined;
      return macCost(numel(y) * a[a.length - 1], 0);
    }
    case 'MaxPool':
    case 'AveragePool':
    case 'LpPool': {
      const k = intsAttr(node, 'kernel_shape');
      if (!k) return undefined;
      return { ops: numel(y) * numel(k), macs: 0 };
    }
    case 'Softmax':
    case 'LogSoftmax':
      return { ops: SOFTMAX_OPS_PER_ELEMENT * numel(y), macs: 0 };
    case 'BatchNormalization':
      return { ops: BATCHNORM_OPS_PER_ELEMENT * numel(y), macs: 0 };
  }
  if (ELEMENTWISE.has(op)) return { ops: numel(y), macs: 0 };
  if (VARIADIC.has(op)) return { ops: Math.max(1, ins.filter((s) => s).length - 1) * numel(y), macs: 0 };
  if (REDUCTIONS.has(op)) {
    const x = shape(ins[0]);
    return x ? { ops: numel(x), macs: 0 } : undefined;
  }
  return undefined;
}

/**
 * Arithmetic ops of one run at the shapes given (from probeShapes). MAC ops
 * count 2 per MAC plus one op per output element for a bias input (Conv,
 * ConvTranspose, QLinearConv, Gemm C); see the tables above for the rest.
 * Top-level nodes only: If/Loop/Scan bodies land in unknownOps.
 */
export function countOps(bytes: Uint8Array, shapes: Map<string, number[]>): OpCount {
  const graph = parseModel(bytes).graph as IGraphProto;
  const shape = (name: string | undefined): number[] | undefined => (name ? shapes.get(name) : undefined);
  const byOpType: Record<string, number> = {};
  const unknown = new Set<string>();
  let total = 0;
  let macs = 0;
  for (const node of graph.node ?? []) {
    const op = node.opType ?? '';
    const cost = nodeCost(node, shape);
    if (!cost) {
      unknown.add(op);
      continue;
    }
    byOpType[op] = (byOpType[op] ?? 0) + cost.ops;
    total += cost.ops;
    macs += cost.macs;
  }
  return { total, macs, byOpType, unknownOps: [...unknown].sort() };
}

/** probeShapes + countOps: ops per run with symbolic dims (the batch) set to 1 unless given. */
export async function countModelOps(
  bytes: Uint8Array,
  inputShapes?: Record<string, number[]>,
): Promise<OpCount & { inputShapes: Record<string, number[]> }> {
  const shapes = await probeShapes(bytes, inputShapes);
  const used: Record<string, number[]> = {};
  for (const i of readModelInfo(bytes).inputs) used[i.name] = shapes.get(i.name) ?? [];
  return { ...countOps(bytes, shapes), inputShapes: used };
}
