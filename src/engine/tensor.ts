import type { TensorType } from './graph/model-info';
import { InputError } from './errors';

export type { TensorType };

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | BigInt64Array | Uint8Array;

/** A tensor as the engine passes it around: element type, dims (batch included) and data. */
export interface TensorData {
  type: TensorType;
  dims: number[];
  data: TypedArray;
}

export type Feeds = Record<string, TensorData>;

type TypedArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  new (length: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

const CTORS: Partial<Record<TensorType, TypedArrayCtor>> = {
  float32: Float32Array as unknown as TypedArrayCtor,
  float64: Float64Array as unknown as TypedArrayCtor,
  // onnxruntime-node carries float16 as raw 16-bit words in a Uint16Array
  float16: Uint16Array as unknown as TypedArrayCtor,
  int8: Int8Array as unknown as TypedArrayCtor,
  uint8: Uint8Array as unknown as TypedArrayCtor,
  int16: Int16Array as unknown as TypedArrayCtor,
  uint16: Uint16Array as unknown as TypedArrayCtor,
  int32: Int32Array as unknown as TypedArrayCtor,
  int64: BigInt64Array as unknown as TypedArrayCtor,
  bool: Uint8Array as unknown as TypedArrayCtor,
};

export function typedArrayCtor(type: TensorType): TypedArrayCtor {
  const ctor = CTORS[type];
  if (!ctor) throw new InputError(`tensor type '${type}' is not supported; expected one of ${Object.keys(CTORS).join(', ')}`);
  return ctor;
}

export function bytesPerElement(type: TensorType): number {
  return typedArrayCtor(type).BYTES_PER_ELEMENT;
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function viewOf(type: TensorType, buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray {
  return new (typedArrayCtor(type))(buffer, byteOffset, length);
}

/** Which TensorType a typed array naturally carries (used to check user data against the model). */
export function typeOfArray(data: unknown): TensorType | undefined {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Uint16Array) return 'uint16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return undefined;
}

/**
 * The largest tensor the engine accepts, per input (1 GiB). Larger tensors overflow the 32-bit
 * offsets used to pack them for the worker threads (at 2 GiB) and would not fit a device anyway.
 */
export const MAX_TENSOR_BYTES = 1024 ** 3;

/**
 * A value from a message as an error message shows it: JSON when it can be written (cut to `max`
 * characters), otherwise its kind (a circular object cannot be written as JSON).
 */
export function showValue(value: unknown, max = 80): string {
  // JSON writes NaN and Infinity as null.
  if (typeof value === 'number') return String(value);
  let json: string | undefined;
  try {
    json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  } catch {
    return `${describeArrival(value)} that cannot be written as JSON (it refers to itself)`;
  }
  if (json === undefined) return typeof value === 'function' ? 'a function' : String(value);
  return json.length > max ? `${json.slice(0, max)}...` : json;
}

export function describeArrival(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as TypedArray).length})`;
  if (typeof value === 'object') return `an object with keys [${Object.keys(value as object).slice(0, 6).join(', ')}]`;
  return typeof value;
}
