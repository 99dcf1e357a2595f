import type { TensorType } from '../tensor';

/**
 * NaN and Infinity in a tensor: an input holding them, or weights that produce them, give an
 * answer that looks normal (top class 0 with a NaN score) but means nothing, so they are errors.
 */

/** Index of the first NaN or ±Infinity in `length` values from `start`, or -1 (only float types can hold one). */
export function firstNonFinite(type: TensorType, data: ArrayLike<number>, start = 0, length = data.length - start): number {
  const end = start + length;
  if (type === 'float32' || type === 'float64') {
    // x - x is 0 for every finite x and NaN for NaN and ±Infinity.
    for (let i = start; i < end; i++) if (data[i] - data[i] !== 0) return i;
  } else if (type === 'float16') {
    // Raw half-precision words: an all-ones exponent is Infinity or NaN.
    for (let i = start; i < end; i++) if ((data[i] & 0x7c00) === 0x7c00) return i;
  }
  return -1;
}

/** What is wrong with a tensor that holds non-finite values, or undefined when it holds none. */
export function nonFiniteProblem(role: 'input' | 'output', name: string, type: TensorType, data: ArrayLike<number>): string | undefined {
  const first = firstNonFinite(type, data);
  if (first < 0) return undefined;
  let count = 0;
  for (let i = first; i >= 0 && i < data.length; i = firstNonFinite(type, data, i + 1)) count++;
  const value = type === 'float16' ? ((data[first] & 0x3ff) !== 0 ? NaN : data[first] & 0x8000 ? -Infinity : Infinity) : data[first];
  const why = role === 'input' ? 'expected finite numbers; check how the input was made' : 'the model produced no usable answer; check its weights and the input';
  return `${role} '${name}' holds ${count} non-finite value${count > 1 ? 's' : ''} of ${data.length} (the first, ${value}, at index ${first}): ${why}`;
}
