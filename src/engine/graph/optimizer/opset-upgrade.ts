/**
 * Raises a model's ai.onnx opset for INT8 (QuantizeLinear needs opset 10, its per-channel axis 13),
 * the way a re-export would: ops whose meaning did not change are kept, ops that moved attributes
 * to inputs (Clip 11, Slice 10, Pad 11, Squeeze/Unsqueeze/ReduceSum/Split 13) are rewritten, and
 * Softmax-family ops (13 changed them from "flatten to 2-D at axis" to "along one axis") are kept
 * only where both readings agree, i.e. the axis is the last one. Anything else is refused by name,
 * so a model is never run under semantics it was not written for. PaddleOCR's exports (opset 9 and
 * 11) are the models this exists for.
 */
import { DataType, IGraphProto, INodeProto, ModelProto, makeFloatTensor, makeInt64Tensor, toNumber } from '../onnx';
import { UnsupportedModelError } from './errors';
import { NameScope, defaultOpset, findAttr, hasSubgraph, isDefaultDomain, nodeLabel } from './graph-edit';
import type { TensorMeta } from './probe';

/** Op type -> lowest opset from which its meaning is unchanged up to opset 13. */
const SAME_SINCE: Record<string, number> = {
  Add: 7, Sub: 7, Mul: 7, Div: 7, Pow: 7, Sum: 8, Max: 8, Min: 8, Mean: 8,
  Conv: 1, ConvTranspose: 11, BatchNormalization: 9, InstanceNormalization: 1, LRN: 1, Gemm: 7, MatMul: 1, Einsum: 12,
  Relu: 1, LeakyRelu: 1, PRelu: 9, Sigmoid: 1, HardSigmoid: 1, Tanh: 1, Exp: 1, Log: 1, Sqrt: 1, Abs: 1, Neg: 1,
  Reciprocal: 1, Floor: 1, Ceil: 1, Erf: 9, Elu: 1, Selu: 1, Softplus: 1, Softsign: 1,
  GlobalAveragePool: 1, GlobalMaxPool: 1, AveragePool: 7, MaxPool: 8,
  Concat: 4, Reshape: 5, Transpose: 1, Shape: 1, Cast: 9, Flatten: 9, Gather: 1, Identity: 1, Constant: 1, ConstantOfShape: 9,
  Expand: 8, Tile: 6, ReduceMean: 1, ReduceMax: 1, ReduceMin: 1, ReduceProd: 1, ReduceL2: 1,
  Equal: 7, Greater: 7, Less: 7, Where: 9, Not: 1, And: 7, Or: 7, Range: 11,
  Resize: 11, Slice: 10, Pad: 11, Clip: 11, Squeeze: 13, Unsqueeze: 13, ReduceSum: 13, Split: 13, Softmax: 13, LogSoftmax: 13, Hardmax: 13,
};

export interface OpsetUpgrade {
  from: number;
  to: number;
  /** Op type -> how many nodes were rewritten into the newer form. */
  rewritten: Record<string, number>;
}

type Rewrite = (node: INodeProto, add: (tensor: ReturnType<typeof makeInt64Tensor>) => string) => void;

function intsAttr(node: INodeProto, name: string): number[] | undefined {
  const a = findAttr(node, name);
  return a?.ints && a.ints.length > 0 ? a.ints.map((v) => toNumber(v)) : undefined;
}

function dropAttrs(node: INodeProto, names: string[]): void {
  node.attribute = (node.attribute ?? []).filter((a) => !names.includes(a.name ?? ''));
}

/** Attribute `attr` (ints) becomes input number `index` (int64, 1-D), or stays absent. */
function intsToInput(attr: string, index: number): Rewrite {
  return (node, add) => {
    const values = intsAttr(node, attr);
    dropAttrs(node, [attr]);
    if (values === undefined) return;
    const inputs = [...(node.input ?? [])];
    while (inputs.length < index) inputs.push('');
    inputs[index] = add(makeInt64Tensor(`${nodeLabel(node)}_${attr}`, [values.length], values));
    node.input = inputs;
  };
}

export function upgradeOpset(model: ModelProto, target: number, meta: Map<string, TensorMeta>, why: string): OpsetUpgrade {
  const from = defaultOpset(model);
  const graph = model.graph as IGraphProto;
  const nodes = (graph.node ?? []).filter(isDefaultDomain);
  const names = new NameScope(graph);
  const rewrites: Record<string, Rewrite> = {};
  const floatInput = (node: INodeProto): boolean => meta.get((node.input ?? [])[0])?.type === 'float32';
  if (from < 11) {
    rewrites.Clip = (node, add) => {
      const min = findAttr(node, 'min');
      const max = findAttr(node, 'max');
      dropAttrs(node, ['min', 'max']);
      const label = nodeLabel(node);
      const x = (node.input ?? [])[0];
      node.input = [x, min ? add(makeFloatTensor(`${label}_min`, [], [min.f ?? 0])) : '', max ? add(makeFloatTensor(`${label}_max`, [], [max.f ?? 0])) : ''];
      while (node.input.length > 1 && node.input[node.input.length - 1] === '') node.input.pop();
    };
    rewrites.Pad = (node, add) => {
      const pads = intsAttr(node, 'pads') ?? [];
      const value = findAttr(node, 'value')?.f ?? 0;
      dropAttrs(node, ['pads', 'value']);
      node.input = [(node.input ?? [])[0], add(makeInt64Tensor(`${nodeLabel(node)}_pads`, [pads.length], pads)), add(makeFloatTensor(`${nodeLabel(node)}_value`, [], [value]))];
    };
  }
  if (from < 10) {
    rewrites.Slice = (node, add) => {
      const axes = intsAttr(node, 'axes');
      for (const [attr, index] of [['starts', 1], ['ends', 2]] as const) intsToInput(attr, index)(node, add);
      if (axes) intsToInput('axes', 3)(node, add);
    };
  }
  rewrites.Squeeze = intsToInput('axes', 1);
  rewrites.Unsqueeze = intsToInput('axes', 1);
  rewrites.ReduceSum = intsToInput('axes', 1);
  rewrites.Split = intsToInput('split', 1);

  // Check everything before changing anything: a refused model is left as it was.
  const refused = new Set<string>();
  for (const node of nodes) {
    const op = node.opType ?? '';
    if (hasSubgraph(node)) refused.add(`${op} (subgraph)`);
    else if (op === 'Softmax' || op === 'LogSoftmax' || op === 'Hardmax') {
      if (from >= 13) continue;
      const rank = meta.get((node.input ?? [])[0])?.dims.length;
      const axis = toNumber(findAttr(node, 'axis')?.i ?? 1);
      if (rank === undefined || (axis < 0 ? axis + rank : axis) !== rank - 1) refused.add(`${op} (axis ${axis} is not the last)`);
    } else if ((op === 'Clip' || op === 'Pad') && from < 11 && !floatInput(node)) refused.add(`${op} (non-float32 input)`);
    else if (!(op in SAME_SINCE) || (from < SAME_SINCE[op] && !rewrites[op])) refused.add(op);
  }
  if (refused.size > 0) {
    const items = [...refused].sort();
    throw new UnsupportedModelError(
      `${why}; the model imports opset ${from}, and these operators cannot be carried to opset ${target} with their meaning kept: ${items.join(', ')}; re-export the model with opset ${target} or newer`,
      items,
    );
  }
  const rewritten: Record<string, number> = {};
  const inits = graph.initializer ?? (graph.initializer = []);
  const add = (tensor: ReturnType<typeof makeInt64Tensor>): string => {
    const name = names.fresh(tensor.name ?? 'upgrade');
    inits.push({ ...tensor, name });
    meta.set(name, { type: tensor.dataType === DataType.INT64 ? 'int64' : 'float32', dims: (tensor.dims ?? []).map((d) => toNumber(d)) });
    return name;
  };
  for (const node of nodes) {
    const op = node.opType ?? '';
    const rewrite = rewrites[op];
    if (!rewrite || from >= SAME_SINCE[op]) continue;
    rewrite(node, add);
    rewritten[op] = (rewritten[op] ?? 0) + 1;
  }
  for (const o of model.opsetImport ?? []) if (!o.domain || o.domain === 'ai.onnx') o.version = target;
  // Opset 13 needs IR version 7 or newer.
  if (toNumber(model.irVersion ?? 0) < 7) model.irVersion = 7;
  return { from, to: target, rewritten };
}
