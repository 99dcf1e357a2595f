/**
 * Deterministic ONNX model generators for tests and benchmarks (no downloads).
 *
 * Every weight comes from a seeded mulberry32 stream, so the same spec always
 * encodes to the same bytes (the graph cache and benchmark baselines rely on
 * that).
 */
import {
  DataType,
  IGraphProto,
  INodeProto,
  ITensorProto,
  IValueInfoProto,
  AttrValue,
  Dim,
  encodeModel,
  makeFloatTensor,
  makeInt8Tensor,
  makeModel,
  makeNode,
  makeUint8Tensor,
  makeValueInfo,
} from './onnx';

/** mulberry32: tiny, fast, good enough for weights; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values uniform in (-limit, limit). */
function uniform(rand: () => number, n: number, limit: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * limit;
  return out;
}

/**
 * Uniform(-a, a) has variance a^2/3, so a = sqrt(3 * gain^2 / fanIn) gives
 * variance gain^2/fanIn: gain^2 = 2 (He) before a Relu keeps the second moment
 * of activations constant layer to layer; gain^2 = 1 for linear layers.
 */
function heLimit(fanIn: number, gain2: number): number {
  return Math.sqrt((3 * gain2) / fanIn);
}

/** Small deterministic biases: non-zero so a zero input still gives non-constant output. */
const BIAS_LIMIT = 0.05;

type Batch = number | 'dynamic';

function batchDim(batch: Batch | undefined): Dim {
  if (batch === undefined || batch === 'dynamic') return 'N';
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer or 'dynamic', got ${batch}`);
  return batch;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

/** Accumulates nodes and initializers for one graph. */
class GraphBuilder {
  readonly nodes: INodeProto[] = [];
  readonly initializers: ITensorProto[] = [];

  constructor(readonly rand: () => number) {}

  init(t: ITensorProto): string {
    this.initializers.push(t);
    return t.name as string;
  }

  node(opType: string, inputs: string[], output: string, attrs: Record<string, AttrValue> = {}): string {
    this.nodes.push(makeNode(opType, inputs, [output], attrs));
    return output;
  }

  build(name: string, inputs: IValueInfoProto[], outputs: IValueInfoProto[]): IGraphProto {
    return { name, node: this.nodes, initializer: this.initializers, input: inputs, output: outputs };
  }
}

// ---------------------------------------------------------------------------
// MLP

export interface MlpSpec {
  inputSize: number;
  hidden: number[];
  outputSize: number;
  seed?: number;
  batch?: Batch;
}

/** Gemm + Relu stack; the last Gemm has no activation. Input 'input' [N, inputSize], output 'output'. */
export function buildMlp(spec: MlpSpec): Uint8Array {
  checkPositiveInt('inputSize', spec.inputSize);
  checkPositiveInt('outputSize', spec.outputSize);
  spec.hidden.forEach((h, i) => checkPositiveInt(`hidden[${i}]`, h));
  const n = batchDim(spec.batch);
  const g = new GraphBuilder(mulberry32(spec.seed ?? 1));
  const sizes = [spec.inputSize, ...spec.hidden, spec.outputSize];
  let x = 'input';
  for (let i = 0; i + 1 < sizes.length; i++) {
    const [fin, fout] = [sizes[i], sizes[i + 1]];
    const last = i + 2 === sizes.length;
    const w = g.init(makeFloatTensor(`fc${i}.weight`, [fin, fout], uniform(g.rand, fin * fout, heLimit(fin, last ? 1 : 2))));
    const b = g.init(makeFloatTensor(`fc${i}.bias`, [fout], uniform(g.rand, fout, BIAS_LIMIT)));
    const y = g.node('Gemm', [x, w, b], last ? 'output' : `fc${i}`);
    x = last ? y : g.node('Relu', [y], `relu${i}`);
  }
  const graph = g.build(
    'mlp',
    [makeValueInfo('input', DataType.FLOAT, [n, spec.inputSize])],
    [makeValueInfo('output', DataType.FLOAT, [n, spec.outputSize])],
  );
  return encodeModel(makeModel(graph));
}

// ---------------------------------------------------------------------------
// MobileNetV2-like CNN

export interface MobileNetSpec {
  inputSize?: number;
  numClasses?: number;
  widthMultiplier?: number;
  seed?: number;
  batch?: Batch;
}

/** (expansion t, channels c, repeats n, first stride s): the MobileNetV2 paper's table 2. */
const MOBILENET_V2_BLOCKS: ReadonlyArray<readonly [number, number, number, number]> = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

/** Channel rounding used by the reference implementation (multiples of 8, never below 90 %). */
function makeDivisible(v: number, divisor = 8): number {
  let r = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (r < 0.9 * v) r += divisor;
  return r;
}

/**
 * Full MobileNetV2 topology (about 300 M MACs at 224x224, 3.5 M parameters)
 * with batch norm folded away: Conv carries a bias, activations are
 * Clip(0, 6). Residual branches' projections use gain 0.5 so the running sum
 * grows by ~1.25x in variance per block instead of 2x (10 residual adds would
 * otherwise push activations into the Relu6 ceiling).
 */
export function buildMobileNetLike(spec: MobileNetSpec = {}): Uint8Array {
  const inputSize = spec.inputSize ?? 224;
  const numClasses = spec.numClasses ?? 1000;
  const wm = spec.widthMultiplier ?? 1.0;
  checkPositiveInt('inputSize', inputSize);
  checkPositiveInt('numClasses', numClasses);
  if (!(wm > 0)) throw new RangeError(`widthMultiplier must be > 0, got ${wm}`);
  const n = batchDim(spec.batch);
  const g = new GraphBuilder(mulberry32(spec.seed ?? 1));

  const clipMin = g.init(makeFloatTensor('relu6.min', [], [0]));
  const clipMax = g.init(makeFloatTensor('relu6.max', [], [6]));

  const conv = (
    name: string,
    x: string,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    group: number,
    act: boolean,
    gain2: number,
  ): string => {
    const fanIn = (cin / group) * k * k;
    const w = g.init(makeFloatTensor(`${name}.weight`, [cout, cin / group, k, k], uniform(g.rand, cout * (cin / group) * k * k, heLimit(fanIn, gain2))));
    const b = g.init(makeFloatTensor(`${name}.bias`, [cout], uniform(g.rand, cout, BIAS_LIMIT)));
    const p = (k - 1) / 2;
    const y = g.node('Conv', [x, w, b], `${name}.out`, {
      kernel_shape: { ints: [k, k] },
      pads: { ints: [p, p, p, p] },
      strides: { ints: [stride, stride] },
      group: { int: group },
    });
    return act ? g.node('Clip', [y, clipMin, clipMax], `${name}.relu6`) : y;
  };

  let cin = makeDivisible(32 * wm);
  let x = conv('stem', 'input', 3, cin, 3, 2, 1, true, 2);
  let blockIndex = 0;
  for (const [t, c, reps, s] of MOBILENET_V2_BLOCKS) {
    const cout = makeDivisible(c * wm);
    for (let r = 0; r < reps; r++) {
      const stride = r === 0 ? s : 1;
      const name = `block${blockIndex++}`;
      const residual = stride === 1 && cin === cout;
      const hidden = cin * t;
      let h = x;
      if (t !== 1) h = conv(`${name}.expand`, h, cin, hidden, 1, 1, 1, true, 2);
      h = conv(`${name}.dw`, h, hidden, hidden, 3, stride, hidden, true, 2);
      h = conv(`${name}.project`, h, hidden, cout, 1, 1, 1, false, residual ? 0.25 : 1);
      x = residual ? g.node('Add', [x, h], `${name}.add`) : h;
      cin = cout;
    }
  }
  const lastChannels = wm > 1 ? makeDivisible(1280 * wm) : 1280;
  x = conv('head', x, cin, lastChannels, 1, 1, 1, true, 2);
  x = g.node('GlobalAveragePool', [x], 'pool');
  x = g.node('Flatten', [x], 'flatten', { axis: { int: 1 } });
  const fcW = g.init(makeFloatTensor('classifier.weight', [numClasses, lastChannels], uniform(g.rand, numClasses * lastChannels, heLimit(lastChannels, 1))));
  const fcB = g.init(makeFloatTensor('classifier.bias', [numClasses], uniform(g.rand, numClasses, BIAS_LIMIT)));
  g.node('Gemm', [x, fcW, fcB], 'logits', { transB: { int: 1 } });

  const graph = g.build(
    'mobilenet_v2_like',
    [makeValueInfo('input', DataType.FLOAT, [n, 3, inputSize, inputSize])],
    [makeValueInfo('logits', DataType.FLOAT, [n, numClasses])],
  );
  return encodeModel(makeModel(graph));
}

// ---------------------------------------------------------------------------
// Single large GEMM for peak ops/s measurement

export interface GemmSpec {
  m: number;
  k: number;
  n: number;
  precision: 'fp32' | 'int8';
  seed?: number;
}

/**
 * Input 'input' [m, k] float32 times a constant [k, n] weight -> 'output' [m, n] float32.
 * fp32 and int8 models with the same seed share the float weights (int8
 * quantizes them), so their outputs are directly comparable.
 *
 * int8 form, chosen by measurement (onnxruntime-node 1.30, AMD EPYC AVX2 without
 * VNNI, 1 intra-op thread, best of 18 runs, fp32 MatMul = 66 GOPS at 2048^3):
 *   QDQ per-channel (Q/DQ on input, DQ on int8 weight, MatMul; ORT fuses it to
 *   QuantizeLinear + MatMulIntegerToFloat)       136 GOPS at 2048^3, 108 at 1024^3
 *   QuantizeLinear + MatMulInteger + Cast + Mul    135 / 104
 *   DynamicQuantizeLinear + MatMulInteger (ORT fuses to DynamicQuantizeMatMul) 137 / 108
 *   QDQ with quantized output (QLinearMatMul)        - /  96, and less accurate
 *   QDQ with uint8 weights (u8u8 kernel)           111 / -
 * All u8s8 forms run the same MLAS kernel, so they tie; we keep QDQ per-channel
 * because it is the static-quantization format calibrated models use.
 *
 * Weights are limited to 7 bits (+-63): on AVX2 hosts without VNNI the u8 x s8
 * kernel (vpmaddubsw) saturates int16 pair sums (255*127*2 > 32767); with
 * full-range weights the measured relative RMS error was 0.19, with +-63 it is
 * 0.0088 (the quantization-noise estimate). Activations are uint8, zero point
 * 128, scale 2/255: inputs are assumed in [-1, 1] and saturate beyond.
 */
export function buildGemm(spec: GemmSpec): Uint8Array {
  const { m, k, n } = spec;
  checkPositiveInt('m', m);
  checkPositiveInt('k', k);
  checkPositiveInt('n', n);
  const g = new GraphBuilder(mulberry32(spec.seed ?? 1));
  // Var(w) = 1/k keeps output magnitude ~ input magnitude.
  const w = uniform(g.rand, k * n, heLimit(k, 1));
  if (spec.precision === 'fp32') {
    const wName = g.init(makeFloatTensor('weight', [k, n], w));
    g.node('MatMul', ['input', wName], 'output');
  } else if (spec.precision === 'int8') {
    const { q, scales } = quantizePerColumn(w, k, n, WEIGHT_QMAX);
    const wq = g.init(makeInt8Tensor('weight.q', [k, n], q));
    const wScale = g.init(makeFloatTensor('weight.scale', [n], scales));
    const wZp = g.init(makeInt8Tensor('weight.zero_point', [n], new Int8Array(n)));
    const aScale = g.init(makeFloatTensor('input.scale', [], [ACT_SCALE]));
    const aZp = g.init(makeUint8Tensor('input.zero_point', [], [ACT_ZERO_POINT]));
    const xq = g.node('QuantizeLinear', ['input', aScale, aZp], 'input.q');
    const xdq = g.node('DequantizeLinear', [xq, aScale, aZp], 'input.dq');
    const wdq = g.node('DequantizeLinear', [wq, wScale, wZp], 'weight.dq', { axis: { int: 1 } });
    g.node('MatMul', [xdq, wdq], 'output');
  } else {
    throw new RangeError(`precision must be 'fp32' or 'int8', got ${String(spec.precision)}`);
  }
  const graph = g.build(
    `gemm_${spec.precision}`,
    [makeValueInfo('input', DataType.FLOAT, [m, k])],
    [makeValueInfo('output', DataType.FLOAT, [m, n])],
  );
  return encodeModel(makeModel(graph));
}

const WEIGHT_QMAX = 63;
const ACT_SCALE = 2 / 255;
const ACT_ZERO_POINT = 128;

/** Symmetric quantization of w [k, n] with one scale per output column. */
function quantizePerColumn(w: Float32Array, k: number, n: number, qmax: number): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(n);
  for (let i = 0; i < k * n; i++) scales[i % n] = Math.max(scales[i % n], Math.abs(w[i]));
  for (let c = 0; c < n; c++) scales[c] = scales[c] > 0 ? scales[c] / qmax : 1;
  const q = new Int8Array(k * n);
  for (let i = 0; i < k * n; i++) q[i] = Math.max(-qmax, Math.min(qmax, Math.round(w[i] / scales[i % n])));
  return { q, scales };
}
