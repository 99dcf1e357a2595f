/**
 * Activation range calibration: min/max, percentile and entropy (KL divergence).
 *
 * Ranges are gathered by running the float model on calibration data through
 * onnxruntime-node with the tensors to quantize exposed as outputs. Histogram methods take
 * two passes over the data: the first finds each tensor's min and max, the second fills a
 * fixed-range histogram. Two exact passes replace the re-binning approximations a one-pass
 * histogram needs when its range grows, at the price of running the model twice.
 */
import * as ort from 'onnxruntime-node';
import { exposeIntermediates } from '../op-count';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';

export interface CalibrationSettings {
  method: CalibrationMethod;
  /** Percentile of values kept (percentile method); default 99.99. */
  percentile?: number;
  /** Histogram bins (percentile and entropy); default 2048, as TensorRT uses. */
  bins?: number;
}

export const DEFAULT_PERCENTILE = 99.99;
export const DEFAULT_BINS = 2048;
/** uint8 activations: the number of levels the KL search quantizes a candidate range into. */
const QUANT_LEVELS = 256;

/** Running statistics of one tensor. */
export class TensorStats {
  min = Infinity;
  max = -Infinity;
  count = 0;
  hist: Float64Array | undefined;
  lo = 0;
  hi = 0;

  observe(data: Float32Array): void {
    let mn = this.min;
    let mx = this.max;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      // NaN fails both comparisons and is skipped.
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    this.min = mn;
    this.max = mx;
    this.count += data.length;
  }

  /**
   * Histogram range: [0, max] for non-negative tensors (post-ReLU), otherwise the observed
   * range, made symmetric for entropy (the KL search grows windows around zero).
   */
  startHistogram(method: CalibrationMethod, bins: number): void {
    if (!(this.max > this.min)) return;
    if (this.min >= 0) {
      this.lo = 0;
      this.hi = this.max;
    } else if (method === 'entropy') {
      const m = Math.max(-this.min, this.max);
      this.lo = -m;
      this.hi = m;
    } else {
      this.lo = Math.min(0, this.min);
      this.hi = Math.max(0, this.max);
    }
    this.hist = new Float64Array(bins);
  }

  accumulate(data: Float32Array): void {
    const hist = this.hist;
    if (!hist) return;
    const bins = hist.length;
    const scale = bins / (this.hi - this.lo);
    const lo = this.lo;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v !== v) continue;
      let b = Math.floor((v - lo) * scale);
      if (b < 0) b = 0;
      else if (b >= bins) b = bins - 1;
      hist[b]++;
    }
  }
}

/** The float range [rmin, rmax] a tensor's quantization should cover, by method. */
export function chooseRange(stats: TensorStats, settings: CalibrationSettings): [number, number] {
  if (stats.count === 0 || !Number.isFinite(stats.min) || !Number.isFinite(stats.max)) {
    throw new RangeError('tensor produced no finite values during calibration');
  }
  if (settings.method === 'minmax' || !stats.hist) return [stats.min, stats.max];
  const range = settings.method === 'percentile' ? percentileRange(stats, settings.percentile ?? DEFAULT_PERCENTILE) : entropyRange(stats);
  // A histogram edge may lie just outside what was seen: never widen the observed range.
  return [Math.max(range[0], stats.min), Math.min(range[1], stats.max)];
}

function edge(stats: TensorStats, index: number): number {
  const hist = stats.hist as Float64Array;
  return stats.lo + ((stats.hi - stats.lo) * index) / hist.length;
}

/**
 * Keeps `percentile` % of the values: non-negative tensors lose only their top tail,
 * signed ones half of the cut on each side (onnxruntime's asymmetric percentile rule).
 */
function percentileRange(stats: TensorStats, percentile: number): [number, number] {
  const hist = stats.hist as Float64Array;
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  const cut = (100 - percentile) / 100;
  const nonNegative = stats.min >= 0;
  const lowCut = nonNegative ? 0 : (cut / 2) * total;
  const highKeep = (1 - (nonNegative ? cut : cut / 2)) * total;
  let acc = 0;
  let lowIndex = 0;
  let highIndex = hist.length;
  let lowFound = nonNegative;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (!lowFound && acc > lowCut) {
      lowIndex = i;
      lowFound = true;
    }
    if (acc >= highKeep) {
      highIndex = i + 1;
      break;
    }
  }
  return [nonNegative ? 0 : edge(stats, lowIndex), edge(stats, highIndex)];
}

/**
 * Entropy calibration (TensorRT's KL-divergence method, as onnxruntime implements it):
 * for each candidate window of the histogram, P is the window with the outliers folded
 * into its end bins, Q is the window quantized into the available levels and expanded back;
 * the window with the smallest KL(P || Q) wins. Non-negative tensors use windows [0, t]
 * with 256 levels (all of uint8 covers them); signed ones symmetric windows around zero.
 */
function entropyRange(stats: TensorStats): [number, number] {
  const nonNegative = stats.min >= 0;
  const hist = Float64Array.from(stats.hist as Float64Array);
  const bins = hist.length;
  // ReLU outputs put a large share of all values exactly at 0; left in, that spike dominates
  // P and the search picks needlessly narrow ranges. TensorRT's calibrator (pytorch-quantization
  // _compute_amax_entropy) replaces the first bin's count with the second's; so does this.
  if (nonNegative && bins > 1) hist[0] = hist[1];
  let best = Infinity;
  let bestRange: [number, number] = [stats.lo, stats.hi];
  if (nonNegative) {
    for (let end = Math.min(QUANT_LEVELS, bins); end <= bins; end++) {
      const kl = windowDivergence(hist, 0, end);
      if (kl < best) {
        best = kl;
        bestRange = [0, edge(stats, end)];
      }
    }
  } else {
    const center = bins >> 1;
    for (let half = Math.min(QUANT_LEVELS >> 1, center); half <= center; half++) {
      const kl = windowDivergence(hist, center - half, Math.min(bins, center + half));
      if (kl < best) {
        best = kl;
        bestRange = [edge(stats, center - half), edge(stats, Math.min(bins, center + half))];
      }
    }
  }
  return bestRange;
}

const SMOOTH_EPS = 1e-4;

/** KL(P || Q) for the window [start, end) of the histogram; Infinity when undefined. */
function windowDivergence(hist: Float64Array, start: number, end: number): number {
  const n = end - start;
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) p[i] = hist[start + i];
  let left = 0;
  for (let i = 0; i < start; i++) left += hist[i];
  let right = 0;
  for (let i = end; i < hist.length; i++) right += hist[i];
  p[0] += left;
  p[n - 1] += right;

  // Q: the window's own counts (outliers excluded) merged into `levels` groups, each spread
  // evenly over the bins of the group where P is non-zero.
  const levels = Math.min(QUANT_LEVELS, n);
  const q = new Float64Array(n);
  for (let g = 0; g < levels; g++) {
    const a = Math.floor((g * n) / levels);
    const b = Math.floor(((g + 1) * n) / levels);
    let sum = 0;
    let nonZero = 0;
    for (let i = a; i < b; i++) {
      sum += hist[start + i];
      if (p[i] !== 0) nonZero++;
    }
    if (nonZero === 0) continue;
    for (let i = a; i < b; i++) if (p[i] !== 0) q[i] = sum / nonZero;
  }
  if (!smooth(p) || !smooth(q)) return Infinity;
  let sp = 0;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    sp += p[i];
    sq += q[i];
  }
  let kl = 0;
  for (let i = 0; i < n; i++) {
    if (p[i] <= 0) continue;
    const pi = p[i] / sp;
    const qi = q[i] / sq;
    kl += pi * Math.log(pi / qi);
  }
  return kl;
}

/**
 * onnxruntime's smooth_distribution: give empty bins a tiny mass taken evenly from the
 * others so the divergence stays finite. False when the distribution is all zeros.
 */
function smooth(d: Float64Array): boolean {
  let zeros = 0;
  for (let i = 0; i < d.length; i++) if (d[i] === 0) zeros++;
  const nonZeros = d.length - zeros;
  if (nonZeros === 0) return false;
  const take = (SMOOTH_EPS * zeros) / nonZeros;
  for (let i = 0; i < d.length; i++) d[i] = d[i] === 0 ? SMOOTH_EPS : d[i] - take;
  return true;
}

export interface CalibrationInput {
  name: string;
  /** Samples concatenated, each `sampleDims` (batch excluded). */
  data: Float32Array;
  sampleDims: number[];
  count: number;
}

export interface CalibratedRange {
  /** The range the quantization covers (before zero is included). */
  range: [number, number];
  /** What calibration observed. */
  min: number;
  max: number;
}

export interface CalibrationRunOptions {
  /** Most samples per run (the model's fixed batch size, if any, wins). */
  maxBatch: number;
  intraOpNumThreads?: number;
}

/**
 * Runs the model over the calibration samples with `tensors` exposed and returns each
 * tensor's chosen range. Graph inputs among `tensors` are measured from the data itself.
 */
export async function calibrateRanges(
  bytes: Uint8Array,
  input: CalibrationInput,
  tensors: string[],
  settings: CalibrationSettings,
  run: CalibrationRunOptions,
): Promise<Map<string, CalibratedRange>> {
  const stats = new Map<string, TensorStats>(tensors.map((t) => [t, new TensorStats()]));
  const exposed = tensors.filter((t) => t !== input.name);
  // When only the graph input needs a range, the data alone gives it: no session.
  const session =
    exposed.length === 0
      ? undefined
      : await ort.InferenceSession.create(exposeIntermediates(bytes, exposed), {
          intraOpNumThreads: run.intraOpNumThreads ?? 2,
          graphOptimizationLevel: 'all',
          logSeverityLevel: 3,
        });
  const sampleSize = input.sampleDims.reduce((a, b) => a * b, 1);
  const pass = async (visit: (s: TensorStats, d: Float32Array) => void): Promise<void> => {
    for (let start = 0; start < input.count; start += run.maxBatch) {
      const n = Math.min(run.maxBatch, input.count - start);
      const data = input.data.subarray(start * sampleSize, (start + n) * sampleSize);
      const own = stats.get(input.name);
      if (own) visit(own, data);
      if (!session) continue;
      const out = await session.run({ [input.name]: new ort.Tensor('float32', data, [n, ...input.sampleDims]) }, exposed);
      for (const name of exposed) {
        const t = out[name];
        if (t.type !== 'float32') throw new RangeError(`tensor '${name}' is ${t.type}, not float32`);
        visit(stats.get(name) as TensorStats, t.data as Float32Array);
      }
      for (const t of Object.values(out)) t.dispose();
    }
  };
  try {
    await pass((s, d) => s.observe(d));
    if (settings.method !== 'minmax') {
      for (const s of stats.values()) s.startHistogram(settings.method, settings.bins ?? DEFAULT_BINS);
      await pass((s, d) => s.accumulate(d));
    }
  } finally {
    await session?.release();
  }
  const ranges = new Map<string, CalibratedRange>();
  for (const [name, s] of stats) {
    try {
      ranges.set(name, { range: chooseRange(s, settings), min: s.min, max: s.max });
    } catch (err) {
      throw new RangeError(`calibration of tensor '${name}': ${(err as Error).message}`, { cause: err });
    }
  }
  return ranges;
}
