/**
 * IEEE 754 binary16 conversion. onnxruntime-node and ONNX's raw_data both carry float16 as
 * raw bit patterns (Uint16), and Node 20 has no Float16Array, so the conversion is done here.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Largest finite float16. */
export const FLOAT16_MAX = 65504;

/** float32 (the value is first rounded to float32, as ONNX stores it) -> float16 bits, round half to even. */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): value = m * 2^-24 with m the 24-bit significand shifted right.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    let h = mant >>> shift;
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export interface HalfConversionStats {
  /** Finite values beyond +-65504, stored as +-65504. */
  clamped: number;
  /** Non-zero values that became (signed) zero. */
  flushedToZero: number;
}

/** Converts a float32 array to float16 bits; out-of-range finite values saturate at +-65504 rather than becoming infinity. */
export function toHalfArray(values: ArrayLike<number>, stats?: HalfConversionStats): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    if (v > FLOAT16_MAX || v < -FLOAT16_MAX) {
      if (Number.isFinite(v)) {
        v = v > 0 ? FLOAT16_MAX : -FLOAT16_MAX;
        if (stats) stats.clamped++;
      }
    }
    const h = toHalfBits(v);
    if (stats && (h & 0x7fff) === 0 && v !== 0) stats.flushedToZero++;
    out[i] = h;
  }
  return out;
}

export function fromHalfArray(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fromHalfBits(bits[i]);
  return out;
}
