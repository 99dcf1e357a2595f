/**
 * Folds image preprocessing into the model: the model then takes uint8 pixels (NHWC by
 * default, as decoders produce them) and does the layout change, channel order, the
 * uint8 -> float conversion and the normalisation itself. A float32 NCHW image input of
 * 3 x 224 x 224 is 602,112 bytes; the uint8 one is 150,528, a quarter, which is what
 * crosses a worker boundary, a USB link or a network.
 *
 * Normalisation has the engine's meaning (src/engine/io/preprocess.ts writePixels):
 * value = pixel * (scale / std[c]) + (-mean[c] / std[c]), so the folded model and the
 * JavaScript path compute the same numbers.
 */
import { DataType, IGraphProto, INodeProto, ModelProto, makeFloatTensor, makeInt64Tensor, makeNode, makeValueInfo, toNumber } from '../onnx';
import { OptimizeOptionsError, UnsupportedModelError } from './errors';
import { NameScope, consumersOf } from './graph-edit';

export interface FoldPreprocessingOptions {
  /** Input to fold into (default: the model's only 4-D input). */
  input?: string;
  /** Layout of the new uint8 input (default NHWC). */
  layout?: 'NHWC' | 'NCHW';
  /** value = (pixel * scale - mean[c]) / std[c]; defaults scale 1/255, mean 0, std 1. */
  scale?: number;
  mean?: number | number[];
  std?: number | number[];
  /** Channel order the model expects; pixels always arrive RGB (default RGB). */
  channelOrder?: 'RGB' | 'BGR';
}

export interface FoldReport {
  input: string;
  before: { type: string; dims: Array<number | string> };
  after: { type: string; dims: Array<number | string> };
  /** Bytes of one sample's input tensor before and after (fixed dims only; null when dynamic). */
  bytesPerSampleBefore: number | null;
  bytesPerSampleAfter: number | null;
  nodesAdded: string[];
}

function perChannel(v: number | number[] | undefined, dflt: number, c: number, what: string): number[] {
  if (v === undefined) return new Array<number>(c).fill(dflt);
  const arr = typeof v === 'number' ? new Array<number>(c).fill(v) : v;
  if (arr.length !== c || arr.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new OptimizeOptionsError(`${what} must be one number or an array of ${c} (one per channel; the input has ${c} channel${c === 1 ? '' : 's'}), got ${JSON.stringify(v)}`);
  }
  return arr;
}

export function foldPreprocessing(model: ModelProto, options: FoldPreprocessingOptions = {}): FoldReport {
  const graph = model.graph as IGraphProto;
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const inputs = (graph.input ?? []).filter((v) => !initNames.has(v.name ?? ''));
  const candidates = options.input ? inputs.filter((v) => v.name === options.input) : inputs.filter((v) => (v.type?.tensorType?.shape?.dim ?? []).length === 4);
  if (candidates.length !== 1) {
    const names = inputs.map((v) => `'${v.name}'`).join(', ');
    throw new OptimizeOptionsError(
      options.input
        ? `foldPreprocessing.input '${options.input}' is not a model input (inputs: ${names})`
        : `foldPreprocessing needs exactly one 4-D image input, the model has ${candidates.length} among ${names}; name it with foldPreprocessing.input`,
    );
  }
  const vi = candidates[0];
  const name = vi.name as string;
  const tt = vi.type?.tensorType;
  const elemType = tt?.elemType ?? 0;
  const dimsProto = tt?.shape?.dim ?? [];
  const dims: Array<number | string> = dimsProto.map((d) => (d.dimParam ? d.dimParam : toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : '?'));
  if (elemType !== DataType.FLOAT && elemType !== DataType.FLOAT16) {
    throw new UnsupportedModelError(`input '${name}' is ${DataType[elemType] ?? elemType}; only float32 or float16 image inputs can take folded preprocessing`, [name]);
  }
  const c = dims[1];
  if (dims.length !== 4 || (c !== 1 && c !== 3)) {
    throw new UnsupportedModelError(`input '${name}' has dims [${dims.join(', ')}]; folding needs an NCHW image input with 1 or 3 channels`, [name]);
  }
  const layout = options.layout ?? 'NHWC';
  if (layout !== 'NHWC' && layout !== 'NCHW') throw new OptimizeOptionsError(`foldPreprocessing.layout must be NHWC or NCHW, got ${JSON.stringify(layout)}`);
  const scale = options.scale ?? 1 / 255;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale === 0) throw new OptimizeOptionsError(`foldPreprocessing.scale must be a non-zero number, got ${JSON.stringify(options.scale)}`);
  const mean = perChannel(options.mean, 0, c, 'foldPreprocessing.mean');
  const std = perChannel(options.std, 1, c, 'foldPreprocessing.std');
  if (std.some((s) => s === 0)) throw new OptimizeOptionsError('foldPreprocessing.std values must not be 0');
  const order = options.channelOrder ?? 'RGB';
  if (order !== 'RGB' && order !== 'BGR') throw new OptimizeOptionsError(`foldPreprocessing.channelOrder must be RGB or BGR, got ${JSON.stringify(order)}`);

  const scope = new NameScope(graph);
  const consumers = consumersOf(graph);
  const pre = scope.fresh(`${name}_preprocessed`);
  for (const u of consumers.get(name) ?? []) (u.node.input as string[])[u.index] = pre;
  for (const o of graph.output ?? []) {
    if (o.name === name) throw new UnsupportedModelError(`input '${name}' is also a graph output; it cannot change type`, [name]);
  }

  const nodes: INodeProto[] = [];
  const inits = graph.initializer ?? [];
  let x = name;
  const add = (op: string, inputs: string[], base: string, attrs: Parameters<typeof makeNode>[3] = {}): void => {
    const out = scope.fresh(`${name}_${base}`);
    nodes.push(makeNode(op, inputs, [out], attrs, scope.fresh(`${name}_${base}_${op}`)));
    x = out;
  };
  // Layout and channel order first, on uint8: a quarter of the bytes to move.
  if (layout === 'NHWC') add('Transpose', [x], 'nchw', { perm: { ints: [0, 3, 1, 2] } });
  if (order === 'BGR' && c === 3) {
    const idx = scope.fresh(`${name}_bgr_indices`);
    inits.push(makeInt64Tensor(idx, [3], [2, 1, 0]));
    add('Gather', [x, idx], 'bgr', { axis: { int: 1 } });
  }
  add('Cast', [x], 'float', { to: { int: DataType.FLOAT } });
  const mul = std.map((s) => scale / s);
  const off = mean.map((m, i) => -m / std[i]);
  if (mul.some((m) => m !== 1)) {
    const t = scope.fresh(`${name}_scale`);
    inits.push(makeFloatTensor(t, [1, c, 1, 1], mul));
    add('Mul', [x, t], 'scaled');
  }
  if (off.some((o) => o !== 0)) {
    const t = scope.fresh(`${name}_offset`);
    inits.push(makeFloatTensor(t, [1, c, 1, 1], off));
    add('Add', [x, t], 'normalized');
  }
  if (elemType === DataType.FLOAT16) add('Cast', [x], 'fp16', { to: { int: DataType.FLOAT16 } });
  // The last node writes the tensor the model's nodes now read.
  const last = nodes[nodes.length - 1];
  (last.output as string[])[0] = pre;
  graph.initializer = inits;
  graph.node = [...nodes, ...(graph.node ?? [])];

  const [n, , h, w] = dims;
  const newDims = layout === 'NHWC' ? [n, h, w, c] : [n, c, h, w];
  const idx = graph.input?.indexOf(vi) ?? -1;
  (graph.input as NonNullable<IGraphProto['input']>)[idx] = makeValueInfo(name, DataType.UINT8, newDims);
  const sample = typeof h === 'number' && typeof w === 'number' ? c * h * w : null;
  return {
    input: name,
    before: { type: elemType === DataType.FLOAT ? 'float32' : 'float16', dims },
    after: { type: 'uint8', dims: newDims },
    bytesPerSampleBefore: sample === null ? null : sample * (elemType === DataType.FLOAT ? 4 : 2),
    bytesPerSampleAfter: sample,
    nodesAdded: nodes.map((nd) => nd.opType ?? ''),
  };
}
