/**
 * The Open Inference Protocol (KServe predict protocol v2) over HTTP/REST, with Triton's binary
 * tensor data extension, as both `ncs2 serve` and the remote device speak it.
 *
 * Sources: kserve/kserve docs/predict-api/v2/required_api.md (health, metadata, inference JSON
 * objects, tensor data types) and triton-inference-server/server
 * docs/protocol/extension_binary_data.md (binary_data_size, binary_data, binary_data_output,
 * Inference-Header-Content-Length: the JSON object, then each binary tensor in the order the JSON
 * lists them, little-endian, row-major; BOOL one byte per element).
 */
import { InputError } from '../../errors';
import { elementCount, typedArrayCtor, type TensorData, type TensorType, type TypedArray } from '../../tensor';

export const INFERENCE_HEADER_LENGTH = 'inference-header-content-length';

/**
 * Response parameters `ncs2 serve` adds (server-specific parameters are allowed by the spec):
 * the device's own run time and the time the request waited in the server's engine, in ms.
 */
export const COMPUTE_MS_PARAMETER = 'ncs2_compute_ms';
export const QUEUE_MS_PARAMETER = 'ncs2_queue_ms';

const WIRE_TYPES: Record<Exclude<TensorType, 'string'>, string> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  uint16: 'UINT16',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
};
const FROM_WIRE = new Map(Object.entries(WIRE_TYPES).map(([t, w]) => [w, t as TensorType]));

export type Parameters = Record<string, string | number | boolean>;

export interface WireTensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions?: string[];
  platform: string;
  inputs: WireTensorMetadata[];
  outputs: WireTensorMetadata[];
}

/** A tensor as it appears in an inference request or response JSON object. */
export interface WireTensor {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Parameters;
  data?: unknown;
}

export interface InferRequestJson {
  id?: string;
  parameters?: Parameters;
  inputs: WireTensor[];
  outputs?: Array<{ name: string; parameters?: Parameters }>;
}

export interface InferResponseJson {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Parameters;
  outputs: WireTensor[];
}

export function toWireType(type: TensorType): string {
  const wire = (WIRE_TYPES as Record<string, string | undefined>)[type];
  if (!wire) throw new InputError(`tensor type '${type}' cannot be sent over the Open Inference Protocol here; supported: ${Object.keys(WIRE_TYPES).join(', ')}`);
  return wire;
}

export function fromWireType(datatype: unknown, what: string): TensorType {
  const type = typeof datatype === 'string' ? FROM_WIRE.get(datatype) : undefined;
  if (!type) throw new InputError(`${what}: datatype ${JSON.stringify(datatype)} is not supported here; expected one of ${[...FROM_WIRE.keys()].join(', ')}`);
  return type;
}

/** A model's tensor metadata: symbolic and unknown dims become -1, as the spec asks. */
export function tensorMetadata(name: string, type: TensorType, dims: ReadonlyArray<number | string>): WireTensorMetadata {
  return { name, datatype: toWireType(type), shape: dims.map((d) => (typeof d === 'number' && d > 0 ? d : -1)) };
}

/** Largest tensor either side accepts in elements: keeps a hostile shape from sizing an allocation. */
const MAX_ELEMENTS = 2 ** 31 - 1;

export function checkShape(shape: unknown, what: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
    throw new InputError(`${what}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)?.slice(0, 80)}`);
  }
  const n = elementCount(shape as number[]);
  if (n > MAX_ELEMENTS) throw new InputError(`${what}: shape [${shape.join(', ')}] has ${n} elements, more than ${MAX_ELEMENTS}`);
  return shape as number[];
}

/** Copies binary tensor bytes into a fresh, aligned typed array (a Buffer slice may sit at any offset). */
export function fromBytes(type: TensorType, bytes: Uint8Array, count: number): TypedArray {
  const Ctor = typedArrayCtor(type);
  const out = new Ctor(count);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/** JSON tensor data, flat or nested as the shape (the spec allows both), into a typed array. */
function fromJsonData(type: TensorType, data: unknown, shape: number[], what: string): TypedArray {
  if (!Array.isArray(data)) throw new InputError(`${what}: "data" must be an array (or the tensor sent as binary data with a "binary_data_size" parameter), got ${typeof data}`);
  if (type === 'float16') throw new InputError(`${what}: FP16 has no JSON representation; send it as binary data ("binary_data_size")`);
  const count = elementCount(shape);
  const flat: unknown[] = [];
  const walk = (value: unknown[], depth: number): void => {
    for (const v of value) {
      if (Array.isArray(v)) {
        if (depth + 1 >= shape.length) throw new InputError(`${what}: "data" is nested deeper than its shape [${shape.join(', ')}]`);
        walk(v, depth + 1);
      } else {
        if (flat.length >= count) throw new InputError(`${what}: shape [${shape.join(', ')}] needs ${count} elements, "data" has more`);
        flat.push(v);
      }
    }
  };
  walk(data, 0);
  if (flat.length !== count) throw new InputError(`${what}: shape [${shape.join(', ')}] needs ${count} elements, "data" has ${flat.length}`);
  const out = new (typedArrayCtor(type))(count);
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    if (type === 'bool') {
      if (typeof v !== 'boolean') throw new InputError(`${what}: BOOL data must be true or false, element ${i} is ${JSON.stringify(v)}`);
      out[i] = v ? 1 : 0;
    } else if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new InputError(`${what}: ${toWireType(type)} data must be numbers, element ${i} is ${JSON.stringify(v)}`);
    } else if (type === 'int64') {
      if (!Number.isSafeInteger(v)) throw new InputError(`${what}: INT64 element ${i} must be an integer, got ${v}`);
      out[i] = BigInt(v);
    } else {
      out[i] = v;
    }
  }
  return out;
}

/**
 * The tensors of a request's "inputs" or a response's "outputs": JSON data, or binary data taken
 * in order from `binary` (the bytes after the JSON object). All of `binary` must be used.
 */
export function decodeTensors(list: unknown, binary: Uint8Array, what: 'input' | 'output'): Array<TensorData & { name: string }> {
  if (!Array.isArray(list)) throw new InputError(`"${what}s" must be an array of tensors, got ${JSON.stringify(list)?.slice(0, 80)}`);
  let offset = 0;
  const tensors = list.map((raw: unknown, index) => {
    if (typeof raw !== 'object' || raw === null) throw new InputError(`${what} ${index} must be an object with name, shape, datatype and data`);
    const t = raw as WireTensor;
    if (typeof t.name !== 'string' || t.name === '') throw new InputError(`${what} ${index}: "name" must be a non-empty string`);
    const label = `${what} '${t.name}'`;
    const type = fromWireType(t.datatype, label);
    const shape = checkShape(t.shape, label);
    const count = elementCount(shape);
    const size = t.parameters?.binary_data_size;
    let data: TypedArray;
    if (size !== undefined) {
      const expected = count * typedArrayCtor(type).BYTES_PER_ELEMENT;
      if (size !== expected) throw new InputError(`${label}: "binary_data_size" is ${JSON.stringify(size)}, but ${t.datatype} shape [${shape.join(', ')}] needs ${expected} bytes`);
      if (offset + expected > binary.length) throw new InputError(`${label}: needs ${expected} bytes of binary data at byte ${offset} after the JSON object, but only ${binary.length - offset} remain`);
      data = fromBytes(type, binary.subarray(offset, offset + expected), count);
      offset += expected;
    } else {
      data = fromJsonData(type, t.data, shape, label);
    }
    return { name: t.name, type, dims: shape, data };
  });
  if (offset !== binary.length) throw new InputError(`the body has ${binary.length - offset} bytes of binary data after the JSON object that no ${what} claims (binary_data_size parameters add up to ${offset})`);
  return tensors;
}

/** Splits a body into its JSON object and the binary data after it (Inference-Header-Content-Length). */
export function splitBody(body: Buffer, headerLength: string | string[] | undefined): { json: unknown; binary: Uint8Array } {
  let jsonLength = body.length;
  if (headerLength !== undefined) {
    const text = Array.isArray(headerLength) ? headerLength[0] : headerLength;
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || n > body.length || n === 0) {
      throw new InputError(`Inference-Header-Content-Length must be the JSON object's length in bytes, 1 to ${body.length} (the body's length), got '${text}'`);
    }
    jsonLength = n;
  }
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, jsonLength).toString('utf8'));
  } catch (err) {
    throw new InputError(`the body is not a JSON object${headerLength !== undefined ? ` in its first ${jsonLength} bytes (Inference-Header-Content-Length)` : ''}: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError(`the body must be a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`);
  return { json, binary: body.subarray(jsonLength) };
}

/** A tensor for a JSON object: its data inline, or a binary_data_size parameter and its bytes in `binary`. */
export function encodeTensor(name: string, t: TensorData, asBinary: boolean, binary: Uint8Array[]): WireTensor {
  const datatype = toWireType(t.type);
  if (asBinary || t.type === 'float16') {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    binary.push(bytes);
    return { name, shape: t.dims, datatype, parameters: { binary_data_size: bytes.byteLength } };
  }
  let data: unknown[];
  if (t.type === 'bool') data = Array.from(t.data as Uint8Array, (v) => v !== 0);
  else if (t.type === 'int64') data = Array.from(t.data as BigInt64Array, (v) => Number(v));
  else data = Array.from(t.data as Float32Array);
  return { name, shape: t.dims, datatype, data };
}

/** The body to send: the JSON object alone, or followed by binary data with the header length to declare. */
export function assembleBody(json: object, binary: Uint8Array[]): { body: Buffer; headerLength?: number } {
  const head = Buffer.from(JSON.stringify(json), 'utf8');
  if (binary.length === 0) return { body: head };
  return { body: Buffer.concat([head, ...binary]), headerLength: head.length };
}
