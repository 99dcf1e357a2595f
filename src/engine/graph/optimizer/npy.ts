/**
 * Reader for NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * Written here rather than taken from npm: the format is a magic string, a length and a
 * Python-literal header dict in front of raw little- or big-endian data, about 80 lines to
 * read completely; the npm readers found either fetch over HTTP for browsers or pull in
 * dependencies, and none validates the header as strictly as error messages here need.
 */
import { fromHalfBits } from './half';

export type NpyDtype = 'float32' | 'float64' | 'float16' | 'uint8' | 'int8' | 'int16' | 'uint16' | 'int32' | 'int64';

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  /** Values converted to float32 (calibration data is float). */
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR: Record<string, { dtype: NpyDtype; size: number }> = {
  f4: { dtype: 'float32', size: 4 },
  f8: { dtype: 'float64', size: 8 },
  f2: { dtype: 'float16', size: 2 },
  u1: { dtype: 'uint8', size: 1 },
  i1: { dtype: 'int8', size: 1 },
  i2: { dtype: 'int16', size: 2 },
  u2: { dtype: 'uint16', size: 2 },
  i4: { dtype: 'int32', size: 4 },
  i8: { dtype: 'int64', size: 8 },
};

export class NpyFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NpyFormatError';
  }
}

export function readNpy(bytes: Uint8Array, label = 'the .npy data'): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new NpyFormatError(`${label} is not a .npy file (expected the magic "\\x93NUMPY" at its start)`);
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let offset: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new NpyFormatError(`${label} is truncated in its header`);
    headerLen = view.getUint32(8, true);
    offset = 12;
  } else {
    throw new NpyFormatError(`${label} has .npy format version ${major}.${bytes[7]}; versions 1, 2 and 3 are supported`);
  }
  if (offset + headerLen > bytes.length) throw new NpyFormatError(`${label} is truncated in its header`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(offset, offset + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new NpyFormatError(`${label} has an unreadable header: ${header.trim()}`);
  }
  if (fortran === 'True') {
    throw new NpyFormatError(`${label} is stored in Fortran (column-major) order; save it C-ordered (numpy.ascontiguousarray) first`);
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const n = Number(s.replace(/L$/, ''));
      if (!Number.isInteger(n) || n < 0) throw new NpyFormatError(`${label} has a bad shape (${shapeText})`);
      return n;
    });
  const order = descr[0];
  const kind = DESCR[descr.slice(1)];
  if (!kind || !['<', '>', '|', '='].includes(order)) {
    throw new NpyFormatError(`${label} holds dtype '${descr}'; supported: float32, float64, float16, int8/16/32/64, uint8/16`);
  }
  const little = order !== '>';
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = offset + headerLen;
  const need = count * kind.size;
  if (bytes.length - dataStart < need) {
    throw new NpyFormatError(`${label} is truncated: shape (${shape.join(', ')}) of ${kind.dtype} needs ${need} data bytes, the file has ${bytes.length - dataStart}`);
  }
  const data = new Float32Array(count);
  const d = new DataView(bytes.buffer, bytes.byteOffset + dataStart, need);
  for (let i = 0; i < count; i++) {
    const at = i * kind.size;
    switch (kind.dtype) {
      case 'float32': data[i] = d.getFloat32(at, little); break;
      case 'float64': data[i] = d.getFloat64(at, little); break;
      case 'float16': data[i] = fromHalfBits(d.getUint16(at, little)); break;
      case 'uint8': data[i] = d.getUint8(at); break;
      case 'int8': data[i] = d.getInt8(at); break;
      case 'int16': data[i] = d.getInt16(at, little); break;
      case 'uint16': data[i] = d.getUint16(at, little); break;
      case 'int32': data[i] = d.getInt32(at, little); break;
      case 'int64': data[i] = Number(d.getBigInt64(at, little)); break;
    }
  }
  return { dtype: kind.dtype, shape, data };
}

/** Writes a C-ordered little-endian float32 .npy (version 1.0); used by tests and tools. */
export function writeNpyFloat32(shape: number[], data: Float32Array): Uint8Array {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // Header (magic + version + length + dict + newline) is padded to a multiple of 64 bytes.
  const unpadded = 10 + dict.length + 1;
  const padded = Math.ceil(unpadded / 64) * 64;
  const header = dict + ' '.repeat(padded - unpadded) + '\n';
  const out = new Uint8Array(10 + header.length + data.length * 4);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const body = new DataView(out.buffer, 10 + header.length);
  for (let i = 0; i < data.length; i++) body.setFloat32(i * 4, data[i], true);
  return out;
}
