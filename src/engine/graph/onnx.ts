/**
 * Typed access to the ONNX protobuf schema (onnx-proto) plus small builders.
 *
 * This is the only module that imports onnx-proto, so a schema upgrade or a
 * switch of protobuf library touches one file. onnx-proto 8 carries the ONNX
 * 1.10 schema (IR version 8): fields added by later ONNX releases (e.g.
 * NodeProto.overload, metadata_props on graphs/nodes) are skipped on decode and
 * therefore dropped when a decoded model is re-encoded.
 */
import * as path from 'path';
import { onnx } from 'onnx-proto';

// Decoding through our own Reader lets us report the failing byte offset. It must be
// the protobufjs copy onnx-proto itself loads (decode() checks `instanceof Reader`),
// so resolve it from onnx-proto's directory rather than from ours.
const { Reader } = require(
  require.resolve('protobufjs/minimal', { paths: [path.dirname(require.resolve('onnx-proto'))] }),
) as typeof import('protobufjs/minimal');

export { onnx };

export type ModelProto = onnx.ModelProto;
export type IModelProto = onnx.IModelProto;
export type IGraphProto = onnx.IGraphProto;
export type INodeProto = onnx.INodeProto;
export type ITensorProto = onnx.ITensorProto;
export type IValueInfoProto = onnx.IValueInfoProto;
export type IAttributeProto = onnx.IAttributeProto;

export const DataType = onnx.TensorProto.DataType;
export const AttributeType = onnx.AttributeProto.AttributeType;

/**
 * Opset 17 / IR 8: every op the builders emit (Gemm, Conv, Clip with tensor
 * min/max, per-channel DequantizeLinear, MatMulInteger ...) exists there,
 * onnxruntime 1.30 supports it, and IR 8 is the newest IR this schema knows.
 */
export const OPSET_VERSION = 17;
export const IR_VERSION = 8;
export const PRODUCER_NAME = 'node-red-ncs2-graph';
export const PRODUCER_VERSION = '0.1.0';

/** protobufjs yields int64 fields as number or Long (when `long` is installed). */
export type Int64 = number | { toNumber(): number };

export function toNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function encodeModel(model: IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Raised by decodeModel; carries the reader offset so callers can report it. */
export class ProtobufDecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'ProtobufDecodeError';
  }
}

/** Decodes a ModelProto; wire-format errors become ProtobufDecodeError with the byte offset. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const reader = Reader.create(bytes);
  try {
    return onnx.ModelProto.decode(reader);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new ProtobufDecodeError(msg, reader.pos);
  }
}

// ---------------------------------------------------------------------------
// Builders

export type AttrValue =
  | { int: number }
  | { ints: number[] }
  | { float: number }
  | { floats: number[] }
  | { string: string }
  | { tensor: ITensorProto };

export function makeAttribute(name: string, value: AttrValue): IAttributeProto {
  if ('int' in value) return { name, type: AttributeType.INT, i: value.int };
  if ('ints' in value) return { name, type: AttributeType.INTS, ints: value.ints };
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: AttributeType.FLOATS, floats: value.floats };
  if ('string' in value) {
    return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value.string) };
  }
  return { name, type: AttributeType.TENSOR, t: value.tensor };
}

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttrValue> = {},
  name?: string,
  domain?: string,
): INodeProto {
  const node: INodeProto = {
    opType,
    input: inputs,
    output: outputs,
    name: name ?? outputs[0],
    attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
  };
  if (domain) node.domain = domain;
  return node;
}

export type Dim = number | string;

export function makeValueInfo(name: string, elemType: number, dims: Dim[]): IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        },
      },
    },
  };
}

/** float32 tensor stored as little-endian raw_data (the ONNX wire layout, independent of host endianness). */
export function makeFloatTensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  checkSize(name, dims, data.length);
  const buf = new Uint8Array(data.length * 4);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return { name, dims, dataType: DataType.FLOAT, rawData: buf };
}

export function makeInt8Tensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  checkSize(name, dims, data.length);
  // Int8Array wraps out-of-range values; callers are expected to pass -128..127.
  return { name, dims, dataType: DataType.INT8, rawData: new Uint8Array(Int8Array.from(data).buffer) };
}

export function makeUint8Tensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  checkSize(name, dims, data.length);
  return { name, dims, dataType: DataType.UINT8, rawData: Uint8Array.from(data) };
}

export function makeInt64Tensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  checkSize(name, dims, data.length);
  const buf = new Uint8Array(data.length * 8);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < data.length; i++) view.setBigInt64(i * 8, BigInt(data[i]), true);
  return { name, dims, dataType: DataType.INT64, rawData: buf };
}

function checkSize(name: string, dims: number[], length: number): void {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== length) {
    throw new Error(`tensor ${name}: dims [${dims.join(',')}] need ${expected} values, got ${length}`);
  }
}

export function makeModel(graph: IGraphProto, opsetVersion = OPSET_VERSION, irVersion = IR_VERSION): IModelProto {
  return {
    irVersion,
    opsetImport: [{ domain: '', version: opsetVersion }],
    producerName: PRODUCER_NAME,
    producerVersion: PRODUCER_VERSION,
    graph,
  };
}
