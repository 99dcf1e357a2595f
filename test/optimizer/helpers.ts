/** Shared fixtures for the optimizer tests: the MNIST model and digits, sessions, error measures. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { IGraphProto, decodeModel, encodeModel, makeNode } from '../../src/engine/graph/onnx';

// Compiled to dist/test/optimizer/, so the repo root is three levels up.
export const ROOT = path.resolve(__dirname, '../../..');
export const MNIST_MODEL = path.join(ROOT, 'models', 'mnist', 'mnist-cnn.onnx');
export const MNIST_SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');
const PIXELS = 784;

interface Split {
  counts: number[];
  test: number[];
}

export interface MnistData {
  /** 200 training digits (20 per class), never held-out ones: the calibration set. */
  calibration: Float32Array[];
  /** The 2,000 held-out digits, concatenated [2000, 1, 28, 28], and their labels. */
  test: Float32Array;
  labels: number[];
}

let cached: MnistData | undefined;

/** Digits as the training script and test/models/mnist-model.test.ts prepare them: exact bytes / 255. */
export function loadMnist(): MnistData {
  if (cached) return cached;
  const split = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'mnist', 'test-split.json'), 'utf8')) as Split;
  const dir = path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  const digits: number[][] = [];
  for (let d = 0; d < 10; d++) digits.push((JSON.parse(fs.readFileSync(path.join(dir, `${d}.json`), 'utf8')) as { data: number[] }).data);
  const offsets: number[] = [];
  split.counts.reduce((acc, n, d) => ((offsets[d] = acc), acc + n), 0);
  const heldOut = new Set(split.test);
  const sample = (d: number, i: number): Float32Array => {
    const x = new Float32Array(PIXELS);
    for (let k = 0; k < PIXELS; k++) x[k] = Math.round(digits[d][i * PIXELS + k] * 255) / 255;
    return x;
  };
  const calibration: Float32Array[] = [];
  for (let d = 0; d < 10; d++) {
    for (let i = 0, taken = 0; taken < 20; i++) {
      if (heldOut.has(offsets[d] + i)) continue;
      calibration.push(sample(d, i));
      taken++;
    }
  }
  const test = new Float32Array(split.test.length * PIXELS);
  const labels: number[] = [];
  split.test.forEach((g, j) => {
    let d = 9;
    while (offsets[d] > g) d--;
    test.set(sample(d, g - offsets[d]), j * PIXELS);
    labels.push(d);
  });
  cached = { calibration, test, labels };
  return cached;
}

/** One run in a fresh session (see withFloat16Boundaries for why the level is a parameter). */
export async function runOnce(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  graphOptimizationLevel: 'disabled' | 'all' = 'all',
): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, logSeverityLevel: 3, graphOptimizationLevel });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** Logits of the 2,000 held-out digits and the top-1 accuracy. */
export async function mnistAccuracy(bytes: Uint8Array, level: 'disabled' | 'all' = 'all'): Promise<{ accuracy: number; logits: Float32Array }> {
  const { test, labels } = loadMnist();
  const out = await runOnce(bytes, { image: new ort.Tensor('float32', test, [labels.length, 1, 28, 28]) }, level);
  const logits = out.logits.data as Float32Array;
  let correct = 0;
  labels.forEach((label, j) => {
    let best = 0;
    for (let k = 1; k < 10; k++) if (logits[j * 10 + k] > logits[j * 10 + best]) best = k;
    if (best === label) correct++;
  });
  return { accuracy: correct / labels.length, logits };
}

/** max |a - b| / max |a|: error relative to the output's scale (elementwise relative error is meaningless near zero). */
export function relativeError(reference: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (reference.length !== actual.length) throw new Error(`length ${reference.length} vs ${actual.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs(reference[i] - actual[i]));
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  return diff / scale;
}

/** Deterministic smooth "images" in [0, 1) (sums of sinusoids), for models without real data. */
export function syntheticImages(count: number, channels: number, size: number, seed = 1): Float32Array[] {
  const out: Float32Array[] = [];
  for (let n = 0; n < count; n++) {
    const x = new Float32Array(channels * size * size);
    const f = 0.05 + 0.03 * ((n * 7 + seed) % 5);
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < size; i++) {
        for (let j = 0; j < size; j++) {
          const v = Math.sin(i * f + c + n) * Math.cos(j * f * 1.3 + seed) * 0.5 + 0.5;
          x[(c * size + i) * size + j] = Math.min(0.999, Math.max(0, v));
        }
      }
    }
    out.push(x);
  }
  return out;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * On an x86 CPU without float16 arithmetic, onnxruntime runs a float16 model's ops in float32
 * and places its Casts at the borders of whole regions, so intermediates are never rounded
 * to float16. A float16 device rounds every op's output. This inserts an unbounded Clip (an
 * identity with a native float16 kernel, which onnxruntime leaves in float16, unlike Cast)
 * behind every node output; run with graph optimizations disabled (which keeps them), each
 * op then reads float16-rounded inputs, as on the device.
 */
export function withFloat16Boundaries(bytes: Uint8Array): Uint8Array {
  const model = decodeModel(bytes);
  const graph = model.graph as IGraphProto;
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  const nodes = [];
  let k = 0;
  for (const node of graph.node ?? []) {
    nodes.push(node);
    if (node.opType === 'Cast') continue;
    node.output = (node.output ?? []).map((o) => {
      if (outputs.has(o)) return o;
      const raw = `${o}__raw${k++}`;
      nodes.push(makeNode('Clip', [raw], [o], {}, `${raw}_round`));
      return raw;
    });
  }
  graph.node = nodes;
  return encodeModel(model);
}
