/**
 * Output presets: classification (top-k with labels) and raw tensors. Results are small plain
 * objects so that Node-RED's per-wire message cloning stays cheap.
 */
import { readTextFile } from './text-file';
import { EngineError, InputError } from '../errors';
import { firstNonFinite } from '../devices/non-finite';
import { elementCount, type TensorData, type TypedArray } from '../tensor';
import { ConfigError } from './errors';

/**
 * When to turn scores into probabilities:
 * - 'auto': softmax unless a row already is a probability distribution (every value in 0..1 and
 *   the row sums to 1 within 1e-3), so logits and softmax outputs both give probabilities;
 * - 'always': the outputs are logits;
 * - 'never': report the model's scores as they are (e.g. sigmoid multi-label outputs).
 */
export type SoftmaxMode = 'auto' | 'always' | 'never';

export interface ClassificationOptions {
  /** How many classes `top` lists (clipped to the number of classes). Default 5. */
  topK?: number;
  /** Label per class index; missing ones are the index as a string. */
  labels?: string[];
  softmax?: SoftmaxMode;
  /** Which output holds the scores; default the first. */
  outputName?: string;
}

export interface ClassScore {
  index: number;
  label: string;
  score: number;
}

export interface Classification extends ClassScore {
  top: ClassScore[];
}

const PROBABILITY_TOLERANCE = 1e-3;

function isDistribution(data: ArrayLike<number>, start: number, length: number): boolean {
  let sum = 0;
  for (let i = start; i < start + length; i++) {
    const v = data[i];
    if (!(v >= 0 && v <= 1)) return false;
    sum += v;
  }
  return Math.abs(sum - 1) <= PROBABILITY_TOLERANCE;
}

function expSum(data: ArrayLike<number>, start: number, length: number, max: number): number {
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += Math.exp(data[i] - max);
  return sum;
}

/** Indices of the k largest values of one row, largest first (ties keep the lower index first). */
export function topIndices(data: ArrayLike<number>, start: number, length: number, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < length; i++) {
    const v = data[start + i];
    if (best.length === k && !(v > data[start + best[k - 1]])) continue;
    // Insertion into a short sorted list: k is small (a handful), classes may be thousands.
    let at: number;
    if (best.length < k) at = best.push(i) - 1;
    else best[(at = k - 1)] = i;
    while (at > 0 && v > data[start + best[at - 1]]) {
      best[at] = best[at - 1];
      best[--at] = i;
    }
  }
  return best;
}

function numericRows(output: TensorData, name: string): { data: ArrayLike<number>; rows: number; classes: number } {
  if (output.type === 'int64' || output.type === 'string' || output.type === 'float16') {
    throw new ConfigError(`classification needs float or integer scores; output '${name}' is ${output.type}; use the raw preset`);
  }
  const rows = output.dims[0] ?? 1;
  const total = elementCount(output.dims);
  if (output.dims.length < 2 || rows === 0 || total % rows !== 0) {
    throw new ConfigError(`classification expects scores shaped [N, classes] (or [N, classes, 1, 1]); output '${name}' is [${output.dims.join(', ')}]; use the raw preset`);
  }
  return { data: output.data as ArrayLike<number>, rows, classes: total / rows };
}

/** Top-k classes per batch row of a classification output. */
export function classify(outputs: Record<string, TensorData>, options: ClassificationOptions = {}): Classification[] {
  const names = Object.keys(outputs);
  const name = options.outputName ?? names[0];
  const output = outputs[name];
  if (!output) throw new ConfigError(`the model has no output '${name}'; its outputs are ${names.map((n) => `'${n}'`).join(', ')}`);
  const { data, rows, classes } = numericRows(output, name);
  const k = Math.max(1, Math.min(options.topK ?? 5, classes));
  const mode = options.softmax ?? 'auto';
  const labels = options.labels ?? [];
  const results: Classification[] = [];
  for (let r = 0; r < rows; r++) {
    const start = r * classes;
    // A NaN score would otherwise come out as class 0 with score NaN: a normal-looking wrong answer.
    const bad = firstNonFinite(output.type, data, start, classes);
    if (bad >= 0) {
      throw new EngineError(`output '${name}' holds a non-finite score (${data[bad]}) for class ${bad - start} of row ${r}: the model gave no usable answer; check its weights and the input`, 'OUTPUT_NOT_FINITE');
    }
    // Softmax preserves order, so the top-k of the raw scores is the top-k of the probabilities.
    const top = topIndices(data, start, classes, k);
    let toScore = (v: number) => v;
    if (mode === 'always' || (mode === 'auto' && !isDistribution(data, start, classes))) {
      const max = data[start + top[0]];
      // summed outside the closure: a captured variable lives in a context, where every += of a
      // double allocated a heap number (1,000 classes: 16 KB of garbage per result)
      const sum = expSum(data, start, classes, max);
      toScore = (v) => Math.exp(v - max) / sum;
    }
    const scored = top.map((index) => ({ index, label: labels[index] ?? String(index), score: toScore(data[start + index]) }));
    results.push({ ...scored[0], top: scored });
  }
  return results;
}

/** Plain arrays serialise to JSON (MQTT, HTTP, dashboards); typed arrays are smaller and faster to clone. */
export type RawFormat = 'array' | 'typed';

export interface RawOutput {
  data: number[] | TypedArray;
  dims: number[];
}

/**
 * Every model output as {data, dims}, or only `count` rows of each from row `row` on (one request's
 * share of a batched result). Typed arrays that view part of a larger buffer are copied to their
 * own, because Node-RED's message cloning copies a view's whole underlying buffer.
 */
export function rawOutputs(outputs: Record<string, TensorData>, format: RawFormat = 'array', row = 0, count?: number): Record<string, RawOutput> {
  const result: Record<string, RawOutput> = {};
  for (const name in outputs) {
    const t = outputs[name];
    const dims = t.dims.slice();
    let start = 0;
    let end = t.data.length;
    if (count !== undefined) {
      const rowLength = t.dims[0] ? t.data.length / t.dims[0] : 0;
      start = row * rowLength;
      end = (row + count) * rowLength;
      dims[0] = count;
    }
    let data: number[] | TypedArray;
    if (format === 'typed') {
      const whole = start === 0 && end === t.data.length && t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength;
      data = whole ? t.data : (t.data.slice(start, end) as TypedArray);
    } else {
      const rows = count === undefined ? t.data : t.data.subarray(start, end);
      // JSON has no BigInt; int64 values beyond 2^53 lose precision, which the help text says.
      data = rows instanceof BigInt64Array ? Array.from(rows, (v) => Number(v)) : Array.from(rows as ArrayLike<number>);
    }
    result[name] = { data, dims };
  }
  return result;
}

/** Labels text: one per line; a trailing newline does not add an empty label; CRLF is fine. */
export function parseLabels(text: string): string[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => l.trim());
}

export async function loadLabels(path: string): Promise<string[]> {
  const text = await readTextFile(path, 'labels file', 'a text file with one label per line');
  const labels = parseLabels(text);
  if (labels.length === 0) throw new InputError(`labels file ${path} is empty; expected one label per line`);
  return labels;
}

/**
 * Checks at load time that a model's output can feed the classification preset, so a wrong
 * preset shows on the config node instead of failing every message.
 */
export function checkClassificationOutput(outputs: ReadonlyArray<{ name: string; type: string; dims: ReadonlyArray<number | string> }>, outputName?: string): string {
  const output = outputName ? outputs.find((o) => o.name === outputName) : outputs[0];
  if (!output) {
    throw new ConfigError(`the model has no output '${outputName ?? ''}'; its outputs are ${outputs.map((o) => `'${o.name}'`).join(', ') || '(none)'}`);
  }
  if (!['float32', 'float64', 'int32', 'int16', 'int8', 'uint8', 'uint16'].includes(output.type)) {
    throw new ConfigError(`classification needs numeric scores; output '${output.name}' is ${output.type}; use the raw preset`);
  }
  if (output.dims.length < 2) {
    throw new ConfigError(`classification expects scores shaped [N, classes]; output '${output.name}' is [${output.dims.join(', ')}]; use the raw preset`);
  }
  return output.name;
}
