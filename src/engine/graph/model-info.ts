/**
 * Static facts about an ONNX model (I/O signature, opset, op histogram,
 * weight size, precision) read from its bytes without creating a session.
 */
import { createHash } from 'crypto';
import {
  DataType,
  IGraphProto,
  ITensorProto,
  IValueInfoProto,
  ModelProto,
  ProtobufDecodeError,
  decodeModel,
  toNumber,
} from './onnx';

export type TensorType =
  | 'float32'
  | 'float16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'int64'
  | 'bool'
  | 'float64'
  | 'string';

export interface TensorInfo {
  name: string;
  type: TensorType;
  /** Numbers for fixed dims, the dim_param (e.g. 'N') for symbolic ones, '?' when unknown. */
  dims: Array<number | string>;
}

export interface ModelInfo {
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  opsetVersion: number;
  irVersion: number;
  producer: string;
  /** Top-level graph nodes (subgraphs of If/Loop/Scan are not descended into). */
  nodeCount: number;
  opTypes: Record<string, number>;
  /** Bytes of initializers and Constant-node tensors. */
  weightBytes: number;
  precision: 'fp32' | 'fp16' | 'int8';
}

/** The bytes are not a (usable) ONNX model; the message says what was expected and what arrived. */
export class ModelFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFormatError';
  }
}

const ELEM_TYPES: Partial<Record<number, TensorType>> = {
  [DataType.FLOAT]: 'float32',
  [DataType.FLOAT16]: 'float16',
  [DataType.INT8]: 'int8',
  [DataType.UINT8]: 'uint8',
  [DataType.INT16]: 'int16',
  [DataType.UINT16]: 'uint16',
  [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64',
  [DataType.BOOL]: 'bool',
  [DataType.DOUBLE]: 'float64',
  [DataType.STRING]: 'string',
};

/** ONNX TensorProto.DataType -> TensorType; undefined for types the engine cannot feed (uint32, bfloat16, complex ...). */
export function tensorTypeFromElemType(elemType: number): TensorType | undefined {
  return ELEM_TYPES[elemType];
}

/** Element sizes in bytes, for weight accounting (string tensors are counted by their payload). */
const ELEM_BYTES: Partial<Record<number, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.UINT16]: 2,
  [DataType.INT16]: 2,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.UINT32]: 4,
  [DataType.UINT64]: 8,
  [DataType.COMPLEX64]: 8,
  [DataType.COMPLEX128]: 16,
  [DataType.BFLOAT16]: 2,
};

/**
 * Decodes and sanity-checks a model. Protobuf is permissive (many byte strings
 * decode into *something*), so beyond wire-format errors we require what every
 * real ONNX file has: an IR version, a default-domain opset and a graph.
 */
export function parseModel(bytes: Uint8Array): ModelProto {
  if (!(bytes instanceof Uint8Array)) {
    throw new ModelFormatError(`expected ONNX model bytes (Uint8Array), got ${bytes === null ? 'null' : typeof bytes}`);
  }
  if (bytes.length === 0) throw new ModelFormatError('expected ONNX model bytes, got an empty buffer');
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (err) {
    if (err instanceof ProtobufDecodeError) {
      throw new ModelFormatError(
        `not an ONNX model: protobuf decode failed at byte ${err.offset} of ${bytes.length} (${err.message})`,
      );
    }
    throw err;
  }
  const ir = toNumber(model.irVersion);
  if (ir <= 0) throw new ModelFormatError(`not an ONNX model: expected ir_version >= 1, got ${ir} (${bytes.length} bytes)`);
  if (!model.graph) throw new ModelFormatError('ONNX model has no graph');
  if (defaultOpset(model) === undefined) {
    throw new ModelFormatError('not an ONNX model: expected an opset_import for the default (ai.onnx) domain, found none');
  }
  return model;
}

function defaultOpset(model: ModelProto): number | undefined {
  const entry = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : undefined;
}

function describeValueInfo(vi: IValueInfoProto, role: string): TensorInfo {
  const name = vi.name ?? '';
  const tt = vi.type?.tensorType;
  if (!tt) {
    const kind = vi.type?.sequenceType ? 'sequence' : vi.type?.mapType ? 'map' : vi.type?.optionalType ? 'optional' : undefined;
    // Name-only outputs (exposeIntermediates) are fine for onnxruntime but carry nothing to report here.
    throw new ModelFormatError(`${role} '${name}': expected a tensor type, got ${kind ?? 'no type (name-only value info)'}`);
  }
  const elemType = tt.elemType ?? 0;
  const type = tensorTypeFromElemType(elemType);
  if (!type) {
    const label = DataType[elemType] ?? String(elemType);
    throw new ModelFormatError(`${role} '${name}': unsupported element type ${label}`);
  }
  // No shape at all means unknown rank; reported as [] (indistinguishable from a scalar, rare for real I/O).
  const dims = (tt.shape?.dim ?? []).map((d): number | string => {
    if (d.dimParam) return d.dimParam;
    if (d.dimValue !== null && d.dimValue !== undefined) {
      const v = toNumber(d.dimValue);
      if (v > 0) return v;
    }
    return '?';
  });
  return { name, type, dims };
}

/** Bytes of a tensor's payload, whichever storage field it uses. */
export function tensorByteSize(t: ITensorProto): number {
  if (t.dataLocation === 1 /* EXTERNAL */) {
    const len = t.externalData?.find((e) => e.key === 'length')?.value;
    if (len) return Number(len);
  }
  if (t.rawData && t.rawData.length > 0) return t.rawData.length;
  if (t.dataType === DataType.STRING) return (t.stringData ?? []).reduce((a, s) => a + s.length, 0);
  const count = (t.dims ?? []).reduce<number>((a, d) => a * toNumber(d), 1);
  return count * (ELEM_BYTES[t.dataType ?? 0] ?? 0);
}

/** Initializers plus Constant nodes' value tensors of a graph: everything that is a weight. */
export function weightTensors(graph: IGraphProto): ITensorProto[] {
  const out = [...(graph.initializer ?? [])];
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Constant') continue;
    for (const a of node.attribute ?? []) if (a.name === 'value' && a.t) out.push(a.t);
  }
  return out;
}

/** Ops whose presence means the model computes in integer arithmetic. */
function isIntegerOp(opType: string): boolean {
  return (
    opType === 'QuantizeLinear' ||
    opType === 'DequantizeLinear' ||
    opType === 'DynamicQuantizeLinear' ||
    opType.startsWith('QLinear') ||
    opType.endsWith('Integer') || // MatMulInteger, ConvInteger
    opType.startsWith('DynamicQuantize') || // com.microsoft fused forms
    opType === 'MatMulIntegerToFloat'
  );
}

export function readModelInfo(bytes: Uint8Array): ModelInfo {
  const model = parseModel(bytes);
  const graph = model.graph as IGraphProto;
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  // IR < 4 lists initializers among inputs; they are weights, not feeds.
  const inputs = (graph.input ?? []).filter((vi) => !initNames.has(vi.name ?? '')).map((vi) => describeValueInfo(vi, 'input'));
  const outputs = (graph.output ?? []).map((vi) => describeValueInfo(vi, 'output'));

  const opTypes: Record<string, number> = {};
  let integer = false;
  for (const node of graph.node ?? []) {
    const op = node.opType ?? '';
    opTypes[op] = (opTypes[op] ?? 0) + 1;
    if (isIntegerOp(op)) integer = true;
  }

  let weightBytes = 0;
  let f16 = 0;
  let f32 = 0;
  for (const t of weightTensors(graph)) {
    const size = tensorByteSize(t);
    weightBytes += size;
    if (t.dataType === DataType.FLOAT16) f16 += size;
    else if (t.dataType === DataType.FLOAT) f32 += size;
  }
  // fp16 when half-precision floats carry most float weight bytes (fp16 exports keep a few fp32 tensors).
  const precision = integer ? 'int8' : f16 > f32 ? 'fp16' : 'fp32';

  const producer = [model.producerName, model.producerVersion].filter((s) => s).join(' ');
  return {
    inputs,
    outputs,
    opsetVersion: defaultOpset(model) as number,
    irVersion: toNumber(model.irVersion),
    producer,
    nodeCount: (graph.node ?? []).length,
    opTypes,
    weightBytes,
    precision,
  };
}

export function hashModel(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
