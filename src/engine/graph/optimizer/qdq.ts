/**
 * INT8 static quantization in QDQ form (QuantizeLinear/DequantizeLinear pairs), the format
 * onnxruntime's Python quantizer writes and onnxruntime's CPU provider fuses into integer
 * kernels (QLinearConv, QGemm, QLinearMatMul / MatMulIntegerToFloat, QLinearAdd,
 * QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat; data movement
 * such as MaxPool, Reshape and Transpose then runs on uint8).
 *
 * Activations: uint8, asymmetric, one scale per tensor from calibration. Weights: int8,
 * symmetric, one scale per output channel (or per tensor). Biases: int32 with scale
 * input_scale x weight_scale, which the fused kernels require.
 *
 * Weights use 7 bits (+-63) by default: on x86 CPUs without VNNI (like this machine's AVX2
 * EPYC) the u8 x s8 kernel sums pairs of products in int16 (vpmaddubsw), and 255 x 127 x 2
 * overflows it; 255 x 63 x 2 = 32130 does not (see builder.ts buildGemm for the measured
 * error, 0.19 vs 0.0088 relative). onnxruntime's own answer is the same ("reduce_range").
 * weightBits: 8 is for VNNI or ARM hosts.
 */
import {
  DataType,
  IGraphProto,
  INodeProto,
  ITensorProto,
  ModelProto,
  makeAttribute,
  makeFloatTensor,
  makeInt8Tensor,
  makeNode,
  makeUint8Tensor,
} from '../onnx';
import {
  NameScope,
  consumersOf,
  floatAttr,
  graphOutputNames,
  intAttr,
  isDefaultDomain,
  nodeLabel,
  producersOf,
  setAttr,
  topoSort,
} from './graph-edit';
import { TensorMeta } from './probe';
import { KeptFloat, NodeRef } from './report';
import { int32Tensor, readFloats, tensorDims } from './tensors';

export type QuantKind = 'compute' | 'data-movement' | 'fused-activation';

export interface QuantizedNode extends NodeRef {
  kind: QuantKind;
}

/** Compute ops whose fused int8 kernel needs a quantized output (QLinear* write uint8). */
const OUTPUT_QUANTIZED = new Set(['Conv', 'Add', 'Mul', 'GlobalAveragePool', 'AveragePool', 'Concat']);
/** Ops that only move or select values: they run on uint8 when Q/DQ with equal parameters surround them. */
const DATA_MOVEMENT = new Set([
  'MaxPool', 'Reshape', 'Flatten', 'Transpose', 'Squeeze', 'Unsqueeze', 'Identity', 'Resize', 'Slice',
  'Gather', 'DepthToSpace', 'SpaceToDepth',
]);
/** Activations that onnxruntime removes in front of a QuantizeLinear whose range lies inside theirs. */
const REMOVABLE_ACTIVATIONS = new Set(['Relu', 'Clip']);

export const QUANTIZABLE_OPS: readonly string[] = ['Conv', 'Gemm', 'MatMul', ...OUTPUT_QUANTIZED, ...DATA_MOVEMENT].filter(
  (op, i, all) => all.indexOf(op) === i,
);

export interface QdqPlan {
  /** Tensors that get a QuantizeLinear/DequantizeLinear pair, in graph order. */
  activations: string[];
  /** Tensor -> tensor whose parameters it shares (outputs of data movement ops). */
  tiedTo: Map<string, string>;
  /** Tensors whose ranges calibration must measure (not tied to another). */
  calibrate: string[];
  quantized: QuantizedNode[];
  keptFloat: KeptFloat[];
  computeNodes: Set<INodeProto>;
}

export interface QdqOptions {
  perChannel: boolean;
  weightBits: 7 | 8;
  /** Node names to leave in float. */
  excludeNodes?: string[];
}

interface Ctx {
  graph: IGraphProto;
  inits: Map<string, ITensorProto>;
  isF32: (name: string) => boolean;
}

function isFloatInit(ctx: Ctx, name: string | undefined): boolean {
  const t = name ? ctx.inits.get(name) : undefined;
  return !!t && t.dataType === DataType.FLOAT;
}

/** Why a node cannot be quantized, or undefined when it can (weights/bias checks per op). */
function computeBlocker(ctx: Ctx, node: INodeProto): string | undefined {
  const ins = node.input ?? [];
  const op = node.opType ?? '';
  const activation = (i: number): boolean => !!ins[i] && ctx.isF32(ins[i]) && !ctx.inits.has(ins[i]);
  switch (op) {
    case 'Conv': {
      if (!activation(0)) return 'its input is not a float32 activation';
      if (!isFloatInit(ctx, ins[1])) return 'its weight is computed, not a float32 constant';
      const rank = tensorDims(ctx.inits.get(ins[1]) as ITensorProto).length;
      if (rank !== 3 && rank !== 4) return `a ${rank - 2}-D convolution has no fused int8 kernel in onnxruntime's CPU provider`;
      if (ins[2] && !isFloatInit(ctx, ins[2])) return 'its bias is computed, not a float32 constant';
      return undefined;
    }
    case 'Gemm': {
      if (!activation(0)) return 'its input is not a float32 activation';
      if (intAttr(node, 'transA', 0) !== 0) return 'transA = 1 has no fused int8 kernel';
      if (!isFloatInit(ctx, ins[1]) || tensorDims(ctx.inits.get(ins[1]) as ITensorProto).length !== 2) return 'its weight B is not a 2-D float32 constant';
      if (ins[2]) {
        if (!isFloatInit(ctx, ins[2])) return 'its bias C is computed, not a float32 constant';
        const b = tensorDims(ctx.inits.get(ins[1]) as ITensorProto);
        const n = intAttr(node, 'transB', 0) ? b[0] : b[1];
        const c = tensorDims(ctx.inits.get(ins[2]) as ITensorProto);
        if (c.reduce((a, x) => a * x, 1) !== n || c.some((d, i) => d !== 1 && i !== c.length - 1)) return `its bias C [${c.join(', ')}] is not one value per output (${n})`;
      }
      return undefined;
    }
    case 'MatMul': {
      if (!activation(0)) return 'its input A is not a float32 activation';
      if (isFloatInit(ctx, ins[1])) {
        if (tensorDims(ctx.inits.get(ins[1]) as ITensorProto).length !== 2) return 'its constant B is not 2-D';
        return undefined;
      }
      return activation(1) ? undefined : 'its input B is neither a float32 constant nor a float32 activation';
    }
    case 'Add':
    case 'Mul':
      if (!activation(0) || !activation(1)) return 'one operand is a constant (no fused int8 kernel gain; kept exact)';
      return undefined;
    case 'GlobalAveragePool':
    case 'AveragePool':
      return activation(0) ? undefined : 'its input is not a float32 activation';
    case 'Concat':
      return ins.every((_, i) => activation(i)) ? undefined : 'an input is a constant or not float32';
    default:
      return undefined;
  }
}

/**
 * Decides which tensors get Q/DQ and which nodes end up quantized. `meta` comes from
 * probeTensors (element types and shapes).
 */
export function planQdq(model: ModelProto, meta: Map<string, TensorMeta>, options: QdqOptions): QdqPlan {
  const graph = model.graph as IGraphProto;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const ctx: Ctx = { graph, inits, isF32: (n) => !!n && meta.get(n)?.type === 'float32' };
  const consumers = consumersOf(graph);
  const producers = producersOf(graph);
  const outputs = graphOutputNames(graph);
  const excluded = new Set(options.excludeNodes ?? []);
  const requested = new Set<string>();
  const tiedTo = new Map<string, string>();
  const computeNodes = new Set<INodeProto>();
  const blockers = new Map<INodeProto, string>();

  /** The tensor whose Q sits after `node`: its output, or the output of a sole Relu/Clip behind it. */
  const quantizedOutput = (node: INodeProto): string | undefined => {
    const out = (node.output ?? [])[0];
    if (!out || outputs.has(out)) return undefined;
    const uses = consumers.get(out) ?? [];
    if (uses.length === 1 && REMOVABLE_ACTIVATIONS.has(uses[0].node.opType ?? '') && isDefaultDomain(uses[0].node) && uses[0].index === 0) {
      const act = uses[0].node;
      const actOut = (act.output ?? [])[0];
      if (act.opType === 'Clip' && !clipRemovable(ctx, act)) return out;
      if (actOut && !outputs.has(actOut)) return actOut;
      return undefined;
    }
    return out;
  };

  for (const node of graph.node ?? []) {
    const op = node.opType ?? '';
    if (!isDefaultDomain(node) || excluded.has(nodeLabel(node))) continue;
    if (!['Conv', 'Gemm', 'MatMul', ...OUTPUT_QUANTIZED].includes(op)) continue;
    const blocker = computeBlocker(ctx, node);
    if (blocker) {
      blockers.set(node, blocker);
      continue;
    }
    let outTensor: string | undefined;
    if (OUTPUT_QUANTIZED.has(op)) {
      outTensor = quantizedOutput(node);
      if (!outTensor) {
        blockers.set(node, 'its output is a graph output: kept float so the model output stays exact (the int8 kernel would need a quantized output)');
        continue;
      }
    }
    computeNodes.add(node);
    const ins = node.input ?? [];
    const acts = op === 'Conv' || op === 'Gemm' ? [ins[0]] : op === 'MatMul' ? (inits.has(ins[1]) ? [ins[0]] : [ins[0], ins[1]]) : ins.filter((s) => s);
    for (const a of acts) requested.add(a);
    if (outTensor) requested.add(outTensor);
  }

  // Data movement nodes, last to first so chains (Reshape -> Transpose -> Conv) resolve in one sweep.
  const movement: INodeProto[] = [];
  const nodes = graph.node ?? [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    const op = node.opType ?? '';
    if (!DATA_MOVEMENT.has(op) || !isDefaultDomain(node) || excluded.has(nodeLabel(node))) continue;
    const out = (node.output ?? [])[0];
    const x = (node.input ?? [])[0];
    if ((node.output ?? []).length !== 1 || !out || !requested.has(out) || !ctx.isF32(x) || inits.has(x)) continue;
    requested.add(x);
    tiedTo.set(out, x);
    movement.push(node);
  }
  const root = (t: string): string => {
    let r = t;
    while (tiedTo.has(r)) r = tiedTo.get(r) as string;
    return r;
  };
  for (const t of [...tiedTo.keys()]) tiedTo.set(t, root(t));

  // Order activations by graph position (inputs first) so the rewrite is deterministic.
  const order = new Map<string, number>();
  (graph.input ?? []).forEach((v, i) => order.set(v.name ?? '', -1 - i));
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => order.set(o, i)));
  const activations = [...requested].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  const calibrate = activations.filter((t) => !tiedTo.has(t));

  // Report.
  const quantized: QuantizedNode[] = [];
  const keptFloat: KeptFloat[] = [];
  const movementSet = new Set(movement);
  for (const node of nodes) {
    const op = node.opType ?? '';
    const ref = { node: nodeLabel(node), op };
    if (computeNodes.has(node)) {
      quantized.push({ ...ref, kind: 'compute' });
      continue;
    }
    if (movementSet.has(node)) {
      quantized.push({ ...ref, kind: 'data-movement' });
      continue;
    }
    const out = (node.output ?? [])[0];
    const x = (node.input ?? [])[0];
    const p = x ? producers.get(x) : undefined;
    if (REMOVABLE_ACTIVATIONS.has(op) && out && requested.has(out) && p && computeNodes.has(p) && (consumers.get(x) ?? []).length === 1) {
      quantized.push({ ...ref, kind: 'fused-activation' });
      continue;
    }
    const hasFloat = [...(node.input ?? []), ...(node.output ?? [])].some((n) => ctx.isF32(n));
    if (!hasFloat) continue;
    let reason: string;
    if (excluded.has(ref.node)) reason = 'excluded on request';
    else if (!isDefaultDomain(node)) reason = `operator of domain '${node.domain}' has no int8 form`;
    else if (blockers.has(node)) reason = blockers.get(node) as string;
    else if (DATA_MOVEMENT.has(op) || REMOVABLE_ACTIVATIONS.has(op)) reason = 'its neighbours are not quantized, so it stays float';
    else reason = `onnxruntime's CPU provider has no int8 kernel for ${op}`;
    keptFloat.push({ ...ref, reason });
  }
  return { activations, tiedTo, calibrate, quantized, keptFloat, computeNodes };
}

/** Clip with constant bounds whose minimum is <= 0 (then a uint8 Q covering [min(0, x), max] lies inside it). */
function clipRemovable(ctx: Ctx, clip: INodeProto): boolean {
  const ins = clip.input ?? [];
  const bound = (i: number, dflt: number): number | undefined => {
    if (!ins[i]) return dflt;
    const t = ctx.inits.get(ins[i]);
    if (!t) return undefined;
    return readFloats(t)[0];
  };
  const min = (clip.attribute ?? []).some((a) => a.name === 'min') ? floatAttr(clip, 'min', -Infinity) : bound(1, -Infinity);
  return min !== undefined && min <= 0;
}

export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

/** uint8 asymmetric parameters covering [min(0, rmin), max(0, rmax)] (zero must be exact). */
export function activationParams(rmin: number, rmax: number): QuantParams {
  const lo = Math.min(0, rmin);
  const hi = Math.max(0, rmax);
  if (hi - lo <= 0) return { scale: 1, zeroPoint: 0 };
  const scale = Math.fround((hi - lo) / 255);
  const zeroPoint = Math.max(0, Math.min(255, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** Round half to even, as QuantizeLinear and numpy (onnxruntime's Python quantizer) round. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

interface QuantizedWeight {
  q: Int8Array;
  scales: Float32Array;
}

/** Symmetric int8 quantization of `w` (dims) with one scale per index of `axis` (or one overall). */
export function quantizeWeight(w: Float32Array, dims: number[], axis: number | undefined, qmax: number): QuantizedWeight {
  const channels = axis === undefined ? 1 : dims[axis];
  const inner = axis === undefined ? w.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number): number => (axis === undefined ? 0 : Math.floor(i / inner) % channels);
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(w[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = maxAbs[c] > 0 ? maxAbs[c] / qmax : 1;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const v = roundHalfEven(w[i] / scales[channelOf(i)]);
    q[i] = v > qmax ? qmax : v < -qmax ? -qmax : v;
  }
  return { q, scales };
}

export interface QdqRewriteStats {
  weights: number;
  biases: number;
  /** Bias values beyond int32 at scale input x weight (clamped). */
  biasClamped: number;
}

const INT32_MAX = 2147483647;

/** Inserts Q/DQ pairs and quantized weights per `plan`, with activation parameters from `params`. */
export function applyQdq(model: ModelProto, plan: QdqPlan, params: Map<string, QuantParams>, options: QdqOptions): QdqRewriteStats {
  const graph = model.graph as IGraphProto;
  const scope = new NameScope(graph);
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const consumers = consumersOf(graph);
  const newNodes: INodeProto[] = [];
  const newInits: ITensorProto[] = [];
  const qmax = options.weightBits === 8 ? 127 : 63;
  const stats: QdqRewriteStats = { weights: 0, biases: 0, biasClamped: 0 };

  // Activation Q/DQ pairs: every node that read the tensor now reads the dequantized copy
  // (so the producer's only consumer is Q, which fusion requires); graph outputs keep the original.
  const paramNames = new Map<string, { scale: string; zp: string }>();
  const dqName = new Map<string, string>();
  for (const t of plan.activations) {
    const r = plan.tiedTo.get(t) ?? t;
    const p = params.get(r);
    if (!p) throw new Error(`no quantization parameters for tensor '${r}'`);
    let names = paramNames.get(r);
    if (!names) {
      names = { scale: scope.fresh(`${r}_scale`), zp: scope.fresh(`${r}_zero_point`) };
      newInits.push(makeFloatTensor(names.scale, [], [p.scale]), makeUint8Tensor(names.zp, [], [p.zeroPoint]));
      paramNames.set(r, names);
    }
    const q = scope.fresh(`${t}_quantized`);
    const dq = scope.fresh(`${t}_dequantized`);
    newNodes.push(makeNode('QuantizeLinear', [t, names.scale, names.zp], [q], {}, scope.fresh(`${t}_QuantizeLinear`)));
    newNodes.push(makeNode('DequantizeLinear', [q, names.scale, names.zp], [dq], {}, scope.fresh(`${t}_DequantizeLinear`)));
    for (const u of consumers.get(t) ?? []) (u.node.input as string[])[u.index] = dq;
    dqName.set(t, dq);
  }

  const sourceOfDq = new Map([...dqName].map(([t, dq]) => [dq, t]));
  const paramsOfInput = (node: INodeProto, index: number): QuantParams => {
    const t = sourceOfDq.get((node.input ?? [])[index]);
    const p = t ? params.get(plan.tiedTo.get(t) ?? t) : undefined;
    if (!p) throw new Error(`input ${index} of node '${nodeLabel(node)}' is not quantized`);
    return p;
  };

  for (const node of plan.computeNodes) {
    const op = node.opType ?? '';
    const ins = node.input as string[];
    if (op !== 'Conv' && op !== 'Gemm' && !(op === 'MatMul' && inits.has(ins[1]))) continue;
    const wInit = inits.get(ins[1]) as ITensorProto;
    let w = readFloats(wInit);
    const wDims = tensorDims(wInit);
    let bias: Float32Array | undefined = ins[2] ? readFloats(inits.get(ins[2]) as ITensorProto) : undefined;
    if (op === 'Gemm') {
      // Fold alpha and beta into the constants so the fused kernel sees plain A x B + C.
      const alpha = floatAttr(node, 'alpha', 1);
      const beta = floatAttr(node, 'beta', 1);
      if (alpha !== 1) w = w.map((v) => v * alpha);
      if (bias && beta !== 1) bias = bias.map((v) => v * beta);
      setAttr(node, makeAttribute('alpha', { float: 1 }));
      setAttr(node, makeAttribute('beta', { float: 1 }));
    }
    // Output-channel axis of the weight: Conv [M, C/g, k...] -> 0; Gemm B [N, K] (transB) -> 0
    // or [K, N] -> 1; MatMul B [K, N] -> 1.
    const channelAxis = op === 'Conv' ? 0 : op === 'Gemm' && intAttr(node, 'transB', 0) === 1 ? 0 : 1;
    const axis = options.perChannel ? channelAxis : undefined;
    const { q, scales } = quantizeWeight(w, wDims, axis, qmax);
    const base = ins[1];
    const qName = scope.fresh(`${base}_quantized`);
    const sName = scope.fresh(`${base}_scale`);
    const zName = scope.fresh(`${base}_zero_point`);
    const sDims = axis === undefined ? [] : [scales.length];
    newInits.push(makeInt8Tensor(qName, wDims, q), makeFloatTensor(sName, sDims, scales), makeInt8Tensor(zName, sDims, new Int8Array(scales.length)));
    const wDq = scope.fresh(`${base}_dequantized`);
    newNodes.push(makeNode('DequantizeLinear', [qName, sName, zName], [wDq], axis === undefined ? {} : { axis: { int: axis } }, scope.fresh(`${base}_DequantizeLinear`)));
    ins[1] = wDq;
    stats.weights++;

    if (bias) {
      const xs = paramsOfInput(node, 0).scale;
      const n = bias.length;
      const bScales = new Float32Array(axis === undefined ? 1 : n);
      for (let c = 0; c < bScales.length; c++) bScales[c] = Math.fround(xs * scales[c]);
      const bq = new Int32Array(n);
      for (let c = 0; c < n; c++) {
        let v = roundHalfEven(bias[c] / bScales[axis === undefined ? 0 : c]);
        if (v > INT32_MAX || v < -INT32_MAX) {
          v = v > 0 ? INT32_MAX : -INT32_MAX;
          stats.biasClamped++;
        }
        bq[c] = v;
      }
      const bBase = ins[2];
      const bqName = scope.fresh(`${bBase}_quantized`);
      const bsName = scope.fresh(`${bBase}_scale`);
      newInits.push(int32Tensor(bqName, [n], bq), makeFloatTensor(bsName, axis === undefined ? [] : [n], bScales));
      const bDq = scope.fresh(`${bBase}_dequantized`);
      newNodes.push(makeNode('DequantizeLinear', [bqName, bsName], [bDq], axis === undefined ? {} : { axis: { int: 0 } }, scope.fresh(`${bBase}_DequantizeLinear`)));
      ins[2] = bDq;
      stats.biases++;
    }
  }

  // Float weights no longer read by any node are dropped.
  graph.node = [...(graph.node ?? []), ...newNodes];
  const used = new Set<string>();
  for (const n of graph.node) for (const i of n.input ?? []) used.add(i);
  for (const o of graph.output ?? []) used.add(o.name ?? '');
  graph.initializer = [...[...inits.values()].filter((t) => used.has(t.name ?? '')), ...newInits];
  // value_info of the rewired tensors stays valid (types unchanged); drop entries of removed initializers.
  graph.input = (graph.input ?? []).filter((v) => !inits.has(v.name ?? '') || used.has(v.name ?? ''));
  topoSort(graph);
  return stats;
}
