/**
 * Facts about a model's tensors taken from onnxruntime itself: one run with every
 * intermediate exposed as a graph output gives each tensor's element type and shape.
 * The runtime is the authority on what it computes, so no ONNX type inference is
 * re-implemented here (the same choice op-count.ts makes for shapes).
 */
import * as ort from 'onnxruntime-node';
import { DataType, IGraphProto, ModelProto, encodeModel } from '../onnx';
import { TensorType, readModelInfo, tensorTypeFromElemType } from '../model-info';
import { probeTensor, runExposed } from '../op-count';
import { mulberry32 } from '../builder';
import { isDefaultDomain } from './graph-edit';
import { tensorDims } from './tensors';

export interface TensorMeta {
  type: TensorType;
  dims: number[];
}

/** Ops whose outputs are sequences or optionals: onnxruntime-node cannot return those as outputs. */
const NON_TENSOR_PRODUCERS = new Set([
  'SequenceConstruct', 'SequenceInsert', 'SequenceErase', 'SequenceEmpty', 'SplitToSequence', 'Optional',
]);

/** Synthetic feeds for every input: symbolic dims become 1 unless `shapes` names them. */
export function syntheticFeeds(bytes: Uint8Array, shapes: Record<string, number[]> = {}): Record<string, ort.Tensor> {
  const rand = mulberry32(7);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of readModelInfo(bytes).inputs) {
    const dims = shapes[i.name] ?? i.dims.map((d) => (typeof d === 'number' ? d : 1));
    feeds[i.name] = probeTensor(i.type, dims, rand);
  }
  return feeds;
}

/**
 * Element type and shape of every tensor: initializers from the file, inputs and node
 * outputs from one run on synthetic data (symbolic dims set to 1 unless given).
 */
export async function probeTensors(model: ModelProto, shapes?: Record<string, number[]>): Promise<Map<string, TensorMeta>> {
  const graph = model.graph as IGraphProto;
  const meta = new Map<string, TensorMeta>();
  for (const t of graph.initializer ?? []) {
    const type = tensorTypeFromElemType(t.dataType ?? DataType.UNDEFINED);
    if (type) meta.set(t.name ?? '', { type, dims: tensorDims(t) });
  }
  const bytes = encodeModel(model);
  const names: string[] = [];
  for (const node of graph.node ?? []) {
    if (isDefaultDomain(node) && NON_TENSOR_PRODUCERS.has(node.opType ?? '')) continue;
    for (const o of node.output ?? []) if (o) names.push(o);
  }
  const feeds = syntheticFeeds(bytes, shapes);
  for (const [name, t] of Object.entries(feeds)) meta.set(name, { type: t.type as TensorType, dims: [...t.dims] });
  for (const [name, t] of await runExposed(bytes, feeds, names)) meta.set(name, { type: t.type as TensorType, dims: [...t.dims] });
  return meta;
}
