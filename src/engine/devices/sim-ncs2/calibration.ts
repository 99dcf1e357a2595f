/**
 * The published NCS2 figures the simulated stick is calibrated on (../shared/reference/ncs2-facts.md),
 * and the fit that turns them into timing parameters. Keeping the derivation in code (not as
 * magic constants) means the README's table, the test and the device all use the same numbers.
 *
 * Ops convention: the figures give GFLOPs per inference with a multiply-accumulate counted as
 * 2 ops (googlenet-v1's 3.266 GFLOPs is its ~1.6 G MACs x 2), the same convention as the engine's
 * op counter (src/engine/graph/op-count.ts).
 */

/** A 224x224x3 image in FP16: the input size the facts give (301 KB). */
export const IMAGE_224_FP16_BYTES = 224 * 224 * 3 * 2;
/** mobilenet-ssd's 300x300x3 input in FP16. */
export const IMAGE_300_FP16_BYTES = 300 * 300 * 3 * 2;
/** 1000 class scores in FP16. */
const CLASSES_1000_FP16_BYTES = 1000 * 2;

export type FigureRole = 'fit' | 'check';

export interface PublishedFigure {
  id: string;
  model: string;
  /** Ops per inference (2 per MAC). */
  ops: number;
  /** Share of those ops in depthwise convolutions (0 for none). */
  depthwiseShare: number;
  inputBytes: number;
  outputBytes: number;
  sticks: number;
  requestsInFlight: number;
  /** The published value and what it measures. */
  value: number;
  metric: 'fps' | 'latencyMs' | 'stickRatio';
  source: string;
  /** 'fit': used to derive a parameter (reproduced by construction); 'check': predicted, an honest test. */
  role: FigureRole;
  /** What we had to assume where the source is silent. */
  assumption?: string;
}

/**
 * Ops of the "tiny 2-layer MLP" are not published; any size under ~1 MFLOP costs < 0.05 ms on the
 * model below, so the figure pins the per-request overhead. We use a 784-128-10 MLP (0.2 MFLOP).
 */
export const TINY_MLP_OPS = 2 * (784 * 128 + 128 * 10) + 128 + 10;

/**
 * MobileNet-SSD (MobileNetV1 width 1.0 backbone at 300x300 + SSD extras and 1x1 box heads, the
 * Caffe model OpenVINO's mobilenet-ssd is converted from), layer by layer: [kind, outH*outW,
 * cin, cout, k] with 'dw' for depthwise 3x3 (cin = cout = channels). Only its depthwise share is
 * used; the table's total (1.148 G MACs = 2.30 GFLOPs) is within 1% of the published 2.316, which
 * checks the table.
 */
const MOBILENET_SSD_LAYERS: ReadonlyArray<readonly ['conv' | 'dw', number, number, number, number]> = [
  ['conv', 150 * 150, 3, 32, 3],
  ['dw', 150 * 150, 32, 32, 3], ['conv', 150 * 150, 32, 64, 1],
  ['dw', 75 * 75, 64, 64, 3], ['conv', 75 * 75, 64, 128, 1],
  ['dw', 75 * 75, 128, 128, 3], ['conv', 75 * 75, 128, 128, 1],
  ['dw', 38 * 38, 128, 128, 3], ['conv', 38 * 38, 128, 256, 1],
  ['dw', 38 * 38, 256, 256, 3], ['conv', 38 * 38, 256, 256, 1],
  ['dw', 19 * 19, 256, 256, 3], ['conv', 19 * 19, 256, 512, 1],
  ...Array.from({ length: 5 }, () => [['dw', 19 * 19, 512, 512, 3], ['conv', 19 * 19, 512, 512, 1]] as const).flat(),
  ['dw', 10 * 10, 512, 512, 3], ['conv', 10 * 10, 512, 1024, 1],
  ['dw', 10 * 10, 1024, 1024, 3], ['conv', 10 * 10, 1024, 1024, 1],
  ['conv', 10 * 10, 1024, 256, 1], ['conv', 5 * 5, 256, 512, 3],
  ['conv', 5 * 5, 512, 128, 1], ['conv', 3 * 3, 128, 256, 3],
  ['conv', 3 * 3, 256, 128, 1], ['conv', 2 * 2, 128, 256, 3],
  ['conv', 2 * 2, 256, 64, 1], ['conv', 1, 64, 128, 3],
  // box heads (21 classes): 3 priors on conv11, 6 on the others; loc + conf channels
  ['conv', 19 * 19, 512, 3 * (4 + 21), 1], ['conv', 10 * 10, 1024, 6 * 25, 1], ['conv', 5 * 5, 512, 6 * 25, 1],
  ['conv', 3 * 3, 256, 6 * 25, 1], ['conv', 2 * 2, 256, 6 * 25, 1], ['conv', 1, 128, 6 * 25, 1],
];

/** MACs of the table and the depthwise share of them. */
export function mobilenetSsdArchitecture(): { macs: number; depthwiseShare: number } {
  let macs = 0;
  let dw = 0;
  for (const [kind, hw, cin, cout, k] of MOBILENET_SSD_LAYERS) {
    const m = kind === 'dw' ? hw * cin * k * k : hw * cin * cout * k * k;
    macs += m;
    if (kind === 'dw') dw += m;
  }
  return { macs, depthwiseShare: dw / macs };
}

const SSD_DW = mobilenetSsdArchitecture().depthwiseShare;

export const PUBLISHED_FIGURES: readonly PublishedFigure[] = [
  {
    id: 'googlenet-sync', model: 'googlenet-v1', ops: 3.266e9, depthwiseShare: 0, inputBytes: IMAGE_224_FP16_BYTES, outputBytes: CLASSES_1000_FP16_BYTES,
    sticks: 1, requestsInFlight: 1, value: 42.1, metric: 'fps', source: 'yas-sim/openvino-multi-ncs2-throughput-mode', role: 'check',
    assumption: 'input sent as FP16 (the source does not say); no host-side time between requests',
  },
  {
    id: 'googlenet-async', model: 'googlenet-v1', ops: 3.266e9, depthwiseShare: 0, inputBytes: IMAGE_224_FP16_BYTES, outputBytes: CLASSES_1000_FP16_BYTES,
    sticks: 1, requestsInFlight: 4, value: 97.0, metric: 'fps', source: 'yas-sim/openvino-multi-ncs2-throughput-mode', role: 'fit',
  },
  {
    id: 'googlenet-2-sticks', model: 'googlenet-v1', ops: 3.266e9, depthwiseShare: 0, inputBytes: IMAGE_224_FP16_BYTES, outputBytes: CLASSES_1000_FP16_BYTES,
    sticks: 2, requestsInFlight: 8, value: 193.8, metric: 'fps', source: 'yas-sim/openvino-multi-ncs2-throughput-mode', role: 'check',
    assumption: 'each stick on its own USB 3 link',
  },
  {
    id: 'squeezenet', model: 'squeezenet1.1', ops: 0.785e9, depthwiseShare: 0, inputBytes: IMAGE_224_FP16_BYTES, outputBytes: CLASSES_1000_FP16_BYTES,
    sticks: 1, requestsInFlight: 4, value: 281, metric: 'fps', source: 'ivost/openvino-playground', role: 'fit',
    assumption: "benchmark_app's default 4 requests (OPTIMAL_NUMBER_OF_INFER_REQUESTS); 224x224 input",
  },
  {
    id: 'squeezenet-latency', model: 'squeezenet1.1', ops: 0.785e9, depthwiseShare: 0, inputBytes: IMAGE_224_FP16_BYTES, outputBytes: CLASSES_1000_FP16_BYTES,
    sticks: 1, requestsInFlight: 4, value: 14.2, metric: 'latencyMs', source: 'ivost/openvino-playground', role: 'check',
    assumption: 'mean latency compared with the model\'s median (they coincide in a closed loop without jitter)',
  },
  {
    id: 'mobilenet-ssd', model: 'mobilenet-ssd 300x300', ops: 2.316e9, depthwiseShare: SSD_DW, inputBytes: IMAGE_300_FP16_BYTES, outputBytes: 100 * 7 * 2,
    sticks: 1, requestsInFlight: 4, value: 48, metric: 'fps', source: 'PINTO0309/MobileNet-SSD-RealSense', role: 'fit',
    assumption: `4 requests in flight (any >= 3 saturates both executors); depthwise share ${(SSD_DW * 100).toFixed(2)}% from the architecture`,
  },
  {
    id: 'tiny-mlp', model: 'tiny 2-layer MLP', ops: TINY_MLP_OPS, depthwiseShare: 0, inputBytes: 784 * 2, outputBytes: 10 * 2,
    sticks: 1, requestsInFlight: 4, value: 5525, metric: 'fps', source: 'openvino issue 9784', role: 'fit',
    assumption: 'ops unpublished: taken as a 784-128-10 MLP (0.2 MFLOP)',
  },
  {
    id: 'yolov8s-pose-2-sticks', model: 'yolov8s-pose 640', ops: 0, depthwiseShare: 0, inputBytes: 640 * 640 * 3 * 2, outputBytes: 0,
    sticks: 2, requestsInFlight: 8, value: 12.22 / 6.13, metric: 'stickRatio', source: 'openvino_notebooks issue 1141', role: 'check',
    assumption: 'its GFLOPs are not in the facts, so only the 2-stick / 1-stick ratio (1.99) is checked, with googlenet-sized work',
  },
];

export interface FittedTiming {
  /** Per-request fixed time on an executor (firmware dispatch, USB round trips), ms. */
  requestOverheadMs: number;
  /** Dense compute time on one executor = coefMs x (GFLOPs)^exponent. */
  denseCoefMs: number;
  denseExponent: number;
  /** Depthwise convolution ops per second on one executor. */
  depthwiseOpsPerSec: number;
}

function figure(id: string): PublishedFigure {
  const f = PUBLISHED_FIGURES.find((x) => x.id === id);
  if (!f) throw new Error(`no published figure ${id}`);
  return f;
}

/**
 * Derives the timing parameters from the 'fit' figures. With >= 3 requests in flight both
 * executors are always busy and the upload overlaps computation, so one stick's throughput is
 * 2 / executor time; that gives four equations:
 *   tiny MLP (compute ~0)   -> request overhead t0
 *   squeezenet + googlenet  -> the dense power law c x G^p (efficiency grows with network size)
 *   mobilenet-ssd           -> the depthwise rate (depthwise layers run far below the engines' peak)
 * The other figures (googlenet sync and 2 sticks, squeezenet latency, the yolov8 stick ratio) are
 * predictions, not inputs.
 */
export function fitTiming(executors = 2): FittedTiming {
  const perExecMs = (f: PublishedFigure) => (executors / f.value) * 1000;
  const mlp = figure('tiny-mlp');
  const sq = figure('squeezenet');
  const gn = figure('googlenet-async');
  const ssd = figure('mobilenet-ssd');
  let t0 = perExecMs(mlp);
  let p = 0.77;
  let c = 8;
  // The MLP's own compute depends on c and p, which depend on t0: a few rounds converge.
  for (let i = 0; i < 20; i++) {
    const a = perExecMs(sq) - t0;
    const b = perExecMs(gn) - t0;
    p = Math.log(b / a) / Math.log(gn.ops / sq.ops);
    c = a / Math.pow(sq.ops / 1e9, p);
    t0 = perExecMs(mlp) - c * Math.pow(mlp.ops / 1e9, p);
  }
  const dense = (1 - ssd.depthwiseShare) * c * Math.pow(ssd.ops / 1e9, p);
  const dwMs = perExecMs(ssd) - t0 - dense;
  const depthwiseOpsPerSec = (ssd.depthwiseShare * ssd.ops) / (dwMs / 1000);
  return { requestOverheadMs: t0, denseCoefMs: c, denseExponent: p, depthwiseOpsPerSec };
}
