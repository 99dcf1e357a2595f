/**
 * Reading and writing initializer payloads. ONNX allows several storage fields per type
 * (raw_data little-endian bytes, or the typed repeated fields); exporters use both, so
 * readers accept both and writers always emit raw_data.
 */
import { DataType, ITensorProto, makeFloatTensor, toNumber } from '../onnx';
import { UnsupportedModelError } from './errors';
import { HalfConversionStats, fromHalfBits, toHalfArray } from './half';

export function tensorDims(t: ITensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

export function elementCount(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function rawView(t: ITensorProto): DataView | undefined {
  const raw = t.rawData;
  if (!raw || raw.length === 0) return undefined;
  return new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
}

function checkInline(t: ITensorProto): void {
  if (t.dataLocation === 1) {
    throw new UnsupportedModelError(
      `tensor '${t.name ?? ''}' is stored in an external data file; the optimizer needs a self-contained model (save it without external data, e.g. onnx.save(model, path, save_as_external_data=False))`,
      [t.name ?? ''],
    );
  }
}

/** A float32, float16 or float64 initializer as float32 values. */
export function readFloats(t: ITensorProto): Float32Array {
  checkInline(t);
  const n = elementCount(tensorDims(t));
  const view = rawView(t);
  const out = new Float32Array(n);
  switch (t.dataType) {
    case DataType.FLOAT:
      if (view) for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      else out.set(t.floatData ?? []);
      return out;
    case DataType.FLOAT16:
      // Without raw_data, float16 bit patterns live in int32_data.
      if (view) for (let i = 0; i < n; i++) out[i] = fromHalfBits(view.getUint16(i * 2, true));
      else (t.int32Data ?? []).forEach((b, i) => (out[i] = fromHalfBits(b)));
      return out;
    case DataType.DOUBLE:
      if (view) for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      else out.set(t.doubleData ?? []);
      return out;
    default:
      throw new Error(`tensor '${t.name ?? ''}' is ${DataType[t.dataType ?? 0] ?? t.dataType}, not a float tensor`);
  }
}

/** Integer initializer values (int64, int32, uint8, int8 ...) as numbers. */
export function readInts(t: ITensorProto): number[] {
  checkInline(t);
  const n = elementCount(tensorDims(t));
  const view = rawView(t);
  const out: number[] = [];
  switch (t.dataType) {
    case DataType.INT64:
      if (view) for (let i = 0; i < n; i++) out.push(Number(view.getBigInt64(i * 8, true)));
      else for (const v of t.int64Data ?? []) out.push(toNumber(v));
      return out;
    case DataType.INT32:
      if (view) for (let i = 0; i < n; i++) out.push(view.getInt32(i * 4, true));
      else out.push(...(t.int32Data ?? []));
      return out;
    case DataType.UINT8:
      if (view) for (let i = 0; i < n; i++) out.push(view.getUint8(i));
      else out.push(...(t.int32Data ?? []));
      return out;
    case DataType.INT8:
      if (view) for (let i = 0; i < n; i++) out.push(view.getInt8(i));
      else out.push(...(t.int32Data ?? []));
      return out;
    default:
      throw new Error(`tensor '${t.name ?? ''}' is ${DataType[t.dataType ?? 0] ?? t.dataType}, not an integer tensor`);
  }
}

export function floatTensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  return makeFloatTensor(name, dims, data);
}

export function halfTensor(name: string, dims: number[], data: ArrayLike<number>, stats?: HalfConversionStats): ITensorProto {
  const bits = toHalfArray(data, stats);
  const raw = new Uint8Array(bits.length * 2);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < bits.length; i++) view.setUint16(i * 2, bits[i], true);
  return { name, dims, dataType: DataType.FLOAT16, rawData: raw };
}

export function int32Tensor(name: string, dims: number[], data: ArrayLike<number>): ITensorProto {
  const raw = new Uint8Array(data.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) view.setInt32(i * 4, data[i], true);
  return { name, dims, dataType: DataType.INT32, rawData: raw };
}
