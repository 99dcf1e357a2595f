/**
 * FP16 conversion: initializers and node computation in float16, Cast nodes at the edges.
 *
 * Graph inputs and outputs stay float32 unless `fp16Io` is set (then they become float16 and
 * a caller saves half the transfer bytes). Operators in FP32_ONLY_OPS (and operators of other
 * domains, whose float16 support is unknown) stay float32 with Casts around them; adjacent
 * float32 nodes share one Cast per tensor, so there is no cast ping-pong inside a region.
 */
import { DataType, IGraphProto, INodeProto, ITensorProto, ModelProto, makeNode } from '../onnx';
import { UnsupportedModelError } from './errors';
import {
  NameScope,
  consumersOf,
  hasSubgraph,
  hoistConstants,
  isDefaultDomain,
  nodeLabel,
  producersOf,
  topoSort,
} from './graph-edit';
import { HalfConversionStats } from './half';
import { TensorMeta } from './probe';
import { KeptFloat, NodeRef } from './report';
import { halfTensor, readFloats, tensorDims } from './tensors';

const RANGE = 'sums or products over many elements overflow float16 (largest value 65504)';
const COORDS = 'coordinate arithmetic (scales, roi) is not exact in float16 above 2048 px';
const DTYPE_ATTR = 'its output type comes from an attribute, not from its inputs';

/**
 * Operators kept in float32, with the reason. Two kinds: the ONNX schema has no float16
 * variant (the model would be invalid), or float16's range (65504) and 11-bit mantissa make
 * the result wrong in ordinary use. onnxconverter-common's float16 block list was the
 * starting point; ops it blocks only for onnxruntime-CPU kernel reasons are not here (see
 * ORT_CPU_FP16_KERNELS).
 */
export const FP32_ONLY_OPS: Readonly<Record<string, string>> = {
  Celu: 'the ONNX schema defines Celu for float32 only',
  NonMaxSuppression: 'the ONNX schema takes float32 boxes and scores only',
  Resize: COORDS,
  Upsample: COORDS,
  RoiAlign: 'box coordinates lose pixel accuracy in float16',
  GridSample: 'sampling coordinates lose pixel accuracy in float16',
  Range: 'integer-valued sequences are not exact in float16 above 2048',
  CumSum: 'running sums overflow float16 and lose precision',
  ReduceSum: RANGE,
  ReduceSumSquare: RANGE,
  ReduceL1: RANGE,
  ReduceL2: RANGE,
  ReduceLogSum: RANGE,
  ReduceLogSumExp: RANGE,
  ReduceProd: RANGE,
  LpNormalization: RANGE,
  MeanVarianceNormalization: RANGE,
  Exp: 'exp overflows float16 for inputs above 11',
  Pow: 'powers overflow float16 quickly (x^2 above x = 256)',
  Softmax: 'output normalisation: exponentials and their sum stay float32 for accuracy at negligible cost',
  LogSoftmax: 'output normalisation: exponentials and their sum stay float32 for accuracy at negligible cost',
  RandomNormal: DTYPE_ATTR,
  RandomUniform: DTYPE_ATTR,
  RandomNormalLike: DTYPE_ATTR,
  RandomUniformLike: DTYPE_ATTR,
  Multinomial: DTYPE_ATTR,
  Bernoulli: DTYPE_ATTR,
  EyeLike: DTYPE_ATTR,
  ConstantOfShape: DTYPE_ATTR,
  QuantizeLinear: 'quantization scales are float32 before opset 19',
  DequantizeLinear: 'quantization scales are float32 before opset 19',
  DynamicQuantizeLinear: 'the ONNX schema takes float32 only',
  DFT: 'signal transforms accumulate over long axes',
  STFT: 'signal transforms accumulate over long axes',
  MelWeightMatrix: DTYPE_ATTR,
};

/**
 * Operators onnxruntime 1.30's CPU provider runs natively in float16 on an x86-64 CPU with
 * AVX2 + F16C (no AVX512-FP16), measured by building one-node float16 models and reading the
 * optimized graph (test/optimizer/fp16.test.ts re-checks a sample of it). For every
 * other op the runtime inserts Cast-to-float32 / Cast-back pairs itself: the float16 model
 * still runs and rounds every intermediate to float16 like a float16 device would, but the
 * arithmetic is float32. Data movement and Clip/Min/Max/LayerNormalization are native.
 */
export const ORT_CPU_FP16_KERNELS: ReadonlySet<string> = new Set([
  'Clip', 'Concat', 'Expand', 'Flatten', 'Gather', 'Identity', 'LayerNormalization', 'Max', 'Min',
  'Reshape', 'Round', 'Sign', 'Slice', 'Split', 'Squeeze', 'Transpose', 'Unsqueeze',
]);

/** Ops whose float inputs may be of any float type: no Cast is needed in front of them. */
const ANY_FLOAT_INPUT = new Set(['Cast', 'Shape', 'Size']);

export interface Fp16Options {
  /** Graph inputs and outputs in float16 too (default false: float32 at the edges). */
  fp16Io?: boolean;
  /** More op types to keep in float32 (on top of FP32_ONLY_OPS). */
  keepFloat32Ops?: string[];
}

export interface Fp16Result {
  converted: NodeRef[];
  keptFloat: KeptFloat[];
  castsInserted: number;
  weights: { tensors: number; values: number } & HalfConversionStats;
  /** Converted op types that onnxruntime's CPU provider (x86) computes in float32 behind its own Casts. */
  cpuFloat32Ops: string[];
}

type Region = 'fp16' | 'fp32' | 'none';
type Home = 'fp16' | 'fp32' | 'init';

/**
 * Converts `model` in place. `meta` gives each tensor's element type (from probeTensors):
 * only float32 tensors change.
 */
export function convertToFp16(model: ModelProto, meta: Map<string, TensorMeta>, options: Fp16Options = {}): Fp16Result {
  const graph = model.graph as IGraphProto;
  const withSubgraphs = (graph.node ?? []).filter(hasSubgraph);
  if (withSubgraphs.length > 0) {
    const items = withSubgraphs.map((n) => `${n.opType} '${nodeLabel(n)}'`);
    throw new UnsupportedModelError(
      `FP16 conversion does not descend into subgraphs, and the outer tensors they read would change type; unsupported nodes: ${items.join(', ')}`,
      items,
    );
  }
  hoistConstants(graph);
  const fp16Io = options.fp16Io ?? false;
  const keepExtra = new Set(options.keepFloat32Ops ?? []);
  const isF32 = (name: string): boolean => !!name && meta.get(name)?.type === 'float32';
  const scope = new NameScope(graph);
  const inits = new Map<string, ITensorProto>((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? '').filter((n) => !inits.has(n)));

  // 1. Region of each node.
  const region = new Map<INodeProto, Region>();
  const converted: NodeRef[] = [];
  const keptFloat: KeptFloat[] = [];
  for (const node of graph.node ?? []) {
    const op = node.opType ?? '';
    const ins = (node.input ?? []).filter(isF32);
    const outs = (node.output ?? []).filter(isF32);
    const ref = { node: nodeLabel(node), op };
    if (ins.length === 0 && outs.length === 0) {
      region.set(node, 'none');
    } else if (!isDefaultDomain(node)) {
      region.set(node, 'fp32');
      keptFloat.push({ ...ref, reason: `operator of domain '${node.domain}': its float16 support is unknown` });
    } else if (op === 'Cast' || ANY_FLOAT_INPUT.has(op)) {
      // Cast's output type is its 'to' attribute; a float32 output stays float32 so that
      // integer -> float casts stay exact (float16 holds integers exactly only up to 2048).
      region.set(node, outs.length > 0 ? 'fp32' : 'none');
      if (outs.length > 0) keptFloat.push({ ...ref, reason: 'a Cast to float32 keeps its type (integers above 2048 are not exact in float16); consumers get a float16 Cast' });
    } else if (FP32_ONLY_OPS[op] !== undefined || keepExtra.has(op)) {
      region.set(node, 'fp32');
      keptFloat.push({ ...ref, reason: FP32_ONLY_OPS[op] ?? 'kept in float32 on request' });
    } else {
      region.set(node, 'fp16');
      converted.push(ref);
    }
  }

  const producer = producersOf(graph);
  const home = (name: string): Home => {
    if (inits.has(name)) return 'init';
    if (graphInputs.has(name)) return fp16Io ? 'fp16' : 'fp32';
    const p = producer.get(name);
    return p && region.get(p) === 'fp16' ? 'fp16' : 'fp32';
  };

  const newNodes: INodeProto[] = [];
  let castsInserted = 0;
  const makeCast = (from: string, to: 'fp16' | 'fp32', output?: string): string => {
    const out = output ?? scope.fresh(`${from}_${to}`);
    const node = makeNode('Cast', [from], [out], { to: { int: to === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT } }, scope.fresh(`${out}_Cast`));
    newNodes.push(node);
    castsInserted++;
    return out;
  };

  const initFp32Used = new Set<string>();
  // 2. Graph outputs keep their names: a producer on the wrong side of the edge is renamed
  //    and a Cast writes the original name.
  const outWant: 'fp16' | 'fp32' = fp16Io ? 'fp16' : 'fp32';
  const consumers = consumersOf(graph);
  for (const vi of graph.output ?? []) {
    const name = vi.name ?? '';
    if (!isF32(name)) continue;
    const h = home(name);
    if (fp16Io && vi.type?.tensorType) vi.type.tensorType.elemType = DataType.FLOAT16;
    if (h === outWant) continue;
    if (h === 'init') {
      // A constant output (rare): float32 outputs keep the float32 tensor; float16 ones read a Cast of it.
      if (outWant === 'fp32') {
        initFp32Used.add(name);
        continue;
      }
      const renamed = scope.fresh(`${name}_src`);
      renameTensor(graph, name, renamed, consumers);
      if (inits.has(name)) {
        const t = inits.get(name) as ITensorProto;
        inits.delete(name);
        t.name = renamed;
        inits.set(renamed, t);
      }
      makeCast(renamed, outWant, name);
      continue;
    }
    const p = producer.get(name) as INodeProto;
    const renamed = scope.fresh(`${name}_${h}`);
    renameTensor(graph, name, renamed, consumers);
    producer.set(renamed, p);
    meta.set(renamed, meta.get(name) as TensorMeta);
    makeCast(renamed, outWant, name);
  }
  if (fp16Io) {
    for (const vi of graph.input ?? []) {
      const name = vi.name ?? '';
      if (graphInputs.has(name) && isF32(name) && vi.type?.tensorType) vi.type.tensorType.elemType = DataType.FLOAT16;
    }
  }

  // 3. Every float32 input slot gets the precision of its node's region.
  const castCache = new Map<string, string>();
  const initFp16Uses = new Map<string, Array<{ node: INodeProto; index: number }>>();
  for (const node of graph.node ?? []) {
    const r = region.get(node);
    if (r === 'none' || r === undefined || ANY_FLOAT_INPUT.has(node.opType ?? '')) continue;
    const inputs = node.input ?? [];
    inputs.forEach((name, index) => {
      if (!isF32(name)) return;
      const h = home(name);
      if (h === 'init') {
        if (r === 'fp16') initFp16Uses.set(name, [...(initFp16Uses.get(name) ?? []), { node, index }]);
        else initFp32Used.add(name);
        return;
      }
      if (h === r) return;
      const key = `${name}->${r}`;
      let cast = castCache.get(key);
      if (!cast) {
        cast = makeCast(name, r);
        castCache.set(key, cast);
      }
      inputs[index] = cast;
    });
  }
  // Graph outputs that read an initializer directly were given a Cast above (they count as float32 uses).
  for (const n of newNodes) for (const i of n.input ?? []) if (inits.has(i)) initFp32Used.add(i);

  // 4. Initializers: converted in place when only float16 nodes read them, else a float16 copy.
  const weights = { tensors: 0, values: 0, clamped: 0, flushedToZero: 0 };
  for (const [name, uses] of initFp16Uses) {
    const t = inits.get(name) as ITensorProto;
    const values = readFloats(t);
    const dims = tensorDims(t);
    weights.tensors++;
    weights.values += values.length;
    if (!initFp32Used.has(name)) {
      const half = halfTensor(name, dims, values, weights);
      Object.assign(t, { dataType: half.dataType, rawData: half.rawData, floatData: [] });
      continue;
    }
    const copy = halfTensor(scope.fresh(`${name}_fp16`), dims, values, weights);
    inits.set(copy.name as string, copy);
    for (const u of uses) (u.node.input as string[])[u.index] = copy.name as string;
  }
  graph.initializer = [...inits.values()];
  graph.node = [...(graph.node ?? []), ...newNodes];
  // value_info entries are optional hints; those of retyped tensors would now be wrong.
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !isF32(v.name ?? ''));
  topoSort(graph);

  const cpuFloat32Ops = [...new Set(converted.map((c) => c.op).filter((op) => !ORT_CPU_FP16_KERNELS.has(op)))].sort();
  return { converted, keptFloat, castsInserted, weights, cpuFloat32Ops };
}

/** Renames a tensor everywhere it is produced or read (graph outputs keep the old name). */
function renameTensor(graph: IGraphProto, from: string, to: string, consumers: Map<string, Array<{ node: INodeProto; index: number }>>): void {
  for (const node of graph.node ?? []) {
    const outs = node.output ?? [];
    outs.forEach((o, i) => {
      if (o === from) outs[i] = to;
    });
  }
  for (const u of consumers.get(from) ?? []) (u.node.input as string[])[u.index] = to;
  consumers.set(to, consumers.get(from) ?? []);
  consumers.delete(from);
}

