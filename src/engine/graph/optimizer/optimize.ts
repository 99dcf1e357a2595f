/**
 * optimizeModel: the one entry point behind the CLI (`ncs2 optimize`), the seed API
 * (GraphOptimizer, NCS2PerformanceOptimizer) and the graph node's optimize-on-load option.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { IGraphProto, ModelProto, decodeModel, encodeModel } from '../onnx';
import { parseModel, readModelInfo } from '../model-info';
import { CalibrationError, OptimizeOptionsError, UnsupportedModelError } from './errors';
import { defaultOpset, hoistConstants, isDefaultDomain } from './graph-edit';
import { probeTensors } from './probe';
import { convertToFp16 } from './fp16';
import { CalibrationMethod, DEFAULT_PERCENTILE, calibrateRanges } from './calibrate';
import { CalibrationSource, ImageCalibrationOptions, loadCalibrationData } from './calibration-data';
import { QuantParams, QuantizedNode, activationParams, applyQdq, planQdq } from './qdq';
import { FoldPreprocessingOptions, FoldReport, foldPreprocessing } from './fold-preprocessing';
import { KeptFloat, NodeRef } from './report';
import { upgradeOpset } from './opset-upgrade';

export type OptimizePrecision = 'fp16' | 'int8' | 'fp32';
export type OptimizeTarget = 'cpu' | 'ncs2';

export interface OptimizeOptions {
  /** Default: 'fp16' (the only precision an NCS2 runs). */
  precision?: OptimizePrecision;
  /** INT8 only: a folder of images, a .npy file ([N, ...input dims]) or Float32Array samples. */
  calibration?: CalibrationSource;
  /** INT8 activation ranges: 'minmax' (default), 'percentile' or 'entropy' (KL divergence). */
  method?: CalibrationMethod;
  /** Percentile kept by method 'percentile' (default 99.99). */
  percentile?: number;
  /** INT8 weights with one scale per output channel (default true) or one per tensor. */
  perChannel?: boolean;
  /** INT8 weight bits: 7 (default, safe on x86 without VNNI) or 8 (VNNI or ARM hosts). */
  weightBits?: 7 | 8;
  /** 'cpu' (default) or 'ncs2': an NCS2 graph is FP16, and INT8 for it is refused. */
  target?: OptimizeTarget;
  /** Fold uint8 image preprocessing into the model (true: defaults, NHWC, 0..1 scaling). */
  foldPreprocessing?: FoldPreprocessingOptions | boolean;
  /** FP16: float16 graph inputs and outputs instead of float32. */
  fp16Io?: boolean;
  /** FP16: more op types to keep in float32. */
  keepFloat32Ops?: string[];
  /** INT8: node names to leave in float. */
  excludeNodes?: string[];
  /** How calibration images become tensors (defaults: foldPreprocessing's normalisation, else 0..1). */
  calibrationImage?: ImageCalibrationOptions;
  /** Use at most this many calibration samples. */
  maxCalibrationSamples?: number;
  /** Shapes for the type probe run when inputs have dynamic dims (default: dynamic dims = 1). */
  inputShapes?: Record<string, number[]>;
  /** Load the result in onnxruntime and report which kernels it runs (default true). */
  verify?: boolean;
}

export interface RuntimeCheck {
  /** Op types (domain-qualified when not ai.onnx) of the graph onnxruntime runs after its own optimizations. */
  ops: Record<string, number>;
  int8Kernels: number;
  floatComputeKernels: number;
}

export interface OptimizeReport {
  precision: OptimizePrecision;
  target: OptimizeTarget;
  opset: number;
  sizeBytes: { before: number; after: number };
  /** Nodes now computing at the reduced precision (for int8 with a kind: compute, data-movement, fused-activation). */
  quantized: Array<NodeRef | QuantizedNode>;
  keptFloat: KeptFloat[];
  castsInserted: number;
  calibration?: { method: CalibrationMethod; percentile?: number; samples: number; tensors: number; perChannel: boolean; weightBits: 7 | 8 };
  preprocessing?: FoldReport;
  runtime?: RuntimeCheck;
  warnings: string[];
  notes: string[];
  durationMs: number;
}

export interface OptimizeResult {
  bytes: Uint8Array;
  report: OptimizeReport;
}

/** Default-domain opsets the optimizer accepts (onnxruntime 1.30 runs 7 and up; newer ones may change op semantics). */
export const MIN_OPSET = 7;
export const MAX_OPSET = 21;
/** INT8 needs QuantizeLinear (opset 10) and, per channel, its axis attribute (opset 13). */
const INT8_MIN_OPSET = 10;
const PER_CHANNEL_MIN_OPSET = 13;
const KNOWN_DOMAINS = new Set(['', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft']);
const QUANTIZED_OPS = new Set(['QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'QLinearConv', 'QLinearMatMul', 'ConvInteger', 'MatMulInteger']);

/** Exposed activations per calibration run are held to about this many bytes. */
const CALIBRATION_BATCH_BYTES = 256 * 1024 * 1024;
const MAX_CALIBRATION_BATCH = 32;
/** A calibrated range under this fraction of the observed one is worth a warning. */
const CLIP_NOTE_FRACTION = 0.5;

export const NCS2_INT8_REFUSAL =
  'INT8 cannot target an NCS2: the Myriad X computes in FP16 only, and OpenVINO\'s MYRIAD plugin rejects quantized graphs with "Unsupported Layer Type FakeQuantize". Use precision fp16 (the default for target ncs2).';

function checkOptions(o: OptimizeOptions): { precision: OptimizePrecision; target: OptimizeTarget } {
  const target = o.target ?? 'cpu';
  if (target !== 'cpu' && target !== 'ncs2') throw new OptimizeOptionsError(`target must be cpu or ncs2, got ${JSON.stringify(o.target)}`);
  const precision = o.precision ?? 'fp16';
  if (!['fp16', 'int8', 'fp32'].includes(precision)) throw new OptimizeOptionsError(`precision must be fp16, int8 or fp32, got ${JSON.stringify(o.precision)}`);
  if (target === 'ncs2' && precision === 'int8') throw new OptimizeOptionsError(NCS2_INT8_REFUSAL);
  if (target === 'ncs2' && precision === 'fp32') {
    throw new OptimizeOptionsError('an NCS2 runs FP16 only (its plugin converts FP32 graphs anyway); use precision fp16 for target ncs2');
  }
  if (o.method !== undefined && !['minmax', 'percentile', 'entropy'].includes(o.method)) {
    throw new OptimizeOptionsError(`method must be minmax, percentile or entropy, got ${JSON.stringify(o.method)}`);
  }
  if (o.percentile !== undefined && !(o.percentile > 50 && o.percentile <= 100)) {
    throw new OptimizeOptionsError(`percentile must be in (50, 100], got ${o.percentile}`);
  }
  if (o.weightBits !== undefined && o.weightBits !== 7 && o.weightBits !== 8) throw new OptimizeOptionsError(`weightBits must be 7 or 8, got ${o.weightBits}`);
  if (precision !== 'int8') {
    const int8Only = (['calibration', 'method', 'percentile', 'perChannel', 'weightBits', 'excludeNodes'] as const).filter((k) => o[k] !== undefined);
    if (int8Only.length > 0) throw new OptimizeOptionsError(`${int8Only.join(', ')} apply to precision int8 only (precision is ${precision})`);
  }
  if (precision !== 'fp16' && (o.fp16Io || o.keepFloat32Ops)) throw new OptimizeOptionsError(`fp16Io and keepFloat32Ops apply to precision fp16 only (precision is ${precision})`);
  if (precision === 'int8' && o.calibration === undefined) {
    throw new OptimizeOptionsError('INT8 needs calibration data: a folder of images, a .npy file or Float32Array samples of the model input');
  }
  return { precision, target };
}

/** Opset and operator checks shared by every precision; throws listing what is unsupported. */
function checkModel(model: ModelProto, precision: OptimizePrecision): number {
  const graph = model.graph as IGraphProto;
  const opset = defaultOpset(model);
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new UnsupportedModelError(`the model imports ai.onnx opset ${opset}; the optimizer supports opsets ${MIN_OPSET} to ${MAX_OPSET}`, [`opset ${opset}`]);
  }
  const unknown = (graph.node ?? []).filter((n) => !KNOWN_DOMAINS.has(n.domain ?? ''));
  if (unknown.length > 0) {
    const items = [...new Set(unknown.map((n) => `${n.domain}.${n.opType}`))];
    throw new UnsupportedModelError(`the model uses operators of custom domains that onnxruntime cannot run without their library: ${items.join(', ')}`, items);
  }
  const quantized = (graph.node ?? []).filter((n) => isDefaultDomain(n) && QUANTIZED_OPS.has(n.opType ?? ''));
  if (quantized.length > 0 && precision !== 'fp32') {
    const items = [...new Set(quantized.map((n) => n.opType ?? ''))];
    throw new UnsupportedModelError(`the model is already quantized (${items.join(', ')}); optimize its float original instead`, items);
  }
  return opset;
}

/** Why an INT8 run needs a newer opset than the model's, or undefined when it does not. */
function int8OpsetNeed(opset: number, perChannel: boolean): string | undefined {
  if (opset < INT8_MIN_OPSET) return `INT8 needs opset >= ${INT8_MIN_OPSET} (QuantizeLinear)`;
  if (perChannel && opset < PER_CHANNEL_MIN_OPSET) return `per-channel INT8 needs opset >= ${PER_CHANNEL_MIN_OPSET} (DequantizeLinear axis; or use perChannel: false)`;
  return undefined;
}

async function readInput(input: string | Uint8Array): Promise<Uint8Array> {
  if (typeof input !== 'string') return input;
  try {
    return new Uint8Array(await fs.promises.readFile(input));
  } catch (err) {
    throw new OptimizeOptionsError(`cannot read model ${input}: ${(err as Error).message}`);
  }
}

function foldOptions(o: OptimizeOptions): FoldPreprocessingOptions | undefined {
  if (o.foldPreprocessing === undefined || o.foldPreprocessing === false) return undefined;
  return o.foldPreprocessing === true ? {} : o.foldPreprocessing;
}

/** Op types of the graph onnxruntime actually runs (its optimized form, saved to a temporary file). */
export async function inspectRuntimeGraph(bytes: Uint8Array): Promise<RuntimeCheck> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'ncs2-opt-'));
  const file = path.join(dir, 'optimized.onnx');
  try {
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: file,
      intraOpNumThreads: 1,
      logSeverityLevel: 3,
    });
    await session.release();
    const graph = decodeModel(await fs.promises.readFile(file)).graph as IGraphProto;
    const ops: Record<string, number> = {};
    let int8Kernels = 0;
    let floatComputeKernels = 0;
    for (const n of graph.node ?? []) {
      const op = n.opType ?? '';
      const key = isDefaultDomain(n) ? op : `${n.domain}.${op}`;
      ops[key] = (ops[key] ?? 0) + 1;
      if (/^QLinear|^QGemm$|Integer/.test(op)) int8Kernels++;
      else if (/^(Conv|FusedConv|Gemm|FusedGemm|MatMul|FusedMatMul|ConvTranspose)$/.test(op)) floatComputeKernels++;
    }
    return { ops, int8Kernels, floatComputeKernels };
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

function modelInputOf(bytes: Uint8Array): ReturnType<typeof readModelInfo>['inputs'][number] {
  const inputs = readModelInfo(bytes).inputs;
  const floats = inputs.filter((i) => i.type === 'float32');
  if (inputs.length !== 1 || floats.length !== 1) {
    throw new CalibrationError(
      `calibration feeds models with exactly one float32 input; this model has ${inputs.map((i) => `'${i.name}' (${i.type})`).join(', ')}`,
    );
  }
  return floats[0];
}

export async function optimizeModel(input: string | Uint8Array, options: OptimizeOptions = {}): Promise<OptimizeResult> {
  const started = Date.now();
  const { precision, target } = checkOptions(options);
  const original = await readInput(input);
  const model = parseModel(original);
  const perChannel = options.perChannel ?? true;
  let opset = checkModel(model, precision);
  const warnings: string[] = [];
  const notes: string[] = [];
  const fold = foldOptions(options);
  let quantized: Array<NodeRef | QuantizedNode> = [];
  let keptFloat: KeptFloat[] = [];
  let castsInserted = 0;
  let calibrationReport: OptimizeReport['calibration'];
  // Weights held in Constant nodes (common in PyTorch exports) become initializers, the one form the passes read.
  if (precision !== 'fp32') hoistConstants(model.graph as IGraphProto);

  if (precision === 'fp16') {
    const meta = await probeOrExplain(model, options.inputShapes);
    const r = convertToFp16(model, meta, { fp16Io: options.fp16Io, keepFloat32Ops: options.keepFloat32Ops });
    quantized = r.converted;
    keptFloat = r.keptFloat;
    castsInserted = r.castsInserted;
    if (r.converted.length === 0) warnings.push('no float32 computation found: nothing was converted');
    if (r.weights.clamped > 0) warnings.push(`${r.weights.clamped} weight values beyond +-65504 were saturated to the float16 maximum`);
    if (r.weights.flushedToZero > 0) notes.push(`${r.weights.flushedToZero} of ${r.weights.values} weight values are below float16's smallest subnormal (6e-8) and became 0`);
    if (target === 'cpu' && r.cpuFloat32Ops.length > 0) {
      notes.push(
        `onnxruntime's CPU provider has no float16 kernels for ${r.cpuFloat32Ops.join(', ')} on x86 without AVX512-FP16: it computes them in float32 between its own Casts ` +
          '(float16 storage, float32 arithmetic; usually slower than the float32 model on such CPUs). FP16 pays off on an NCS2 or a float16-capable CPU; INT8 is the CPU speed-up.',
      );
    }
  } else if (precision === 'int8') {
    const calibration = options.calibration as CalibrationSource;
    const modelInput = modelInputOf(original);
    const imageDefaults = fold ? { scale: fold.scale, mean: fold.mean, std: fold.std, channelOrder: fold.channelOrder } : {};
    const data = await loadCalibrationData(calibration, modelInput, {
      image: { ...imageDefaults, ...(options.calibrationImage ?? {}) },
      maxSamples: options.maxCalibrationSamples,
    });
    const meta = await probeOrExplain(model, { [data.name]: [1, ...data.sampleDims] });
    const need = int8OpsetNeed(opset, perChannel);
    if (need) {
      // As a re-export would: older exports (PaddleOCR's are opset 9 and 11) quantize like new ones.
      const up = upgradeOpset(model, PER_CHANNEL_MIN_OPSET, meta, need);
      const rewritten = Object.entries(up.rewritten).map(([op, n]) => `${op} x${n}`).join(', ');
      notes.push(`opset ${up.from} raised to ${up.to} for INT8${rewritten ? ` (attribute forms rewritten as inputs: ${rewritten})` : ''}`);
      opset = up.to;
    }
    const qdqOptions = { perChannel, weightBits: options.weightBits ?? 7, excludeNodes: options.excludeNodes };
    const plan = planQdq(model, meta, qdqOptions);
    if (plan.computeNodes.size === 0) warnings.push('no Conv, MatMul, Gemm or other quantizable node was found: the model is unchanged apart from Q/DQ on its inputs');
    const perSample = plan.calibrate.reduce((a, t) => a + (meta.get(t)?.dims ?? []).reduce((x, y) => x * y, 1) * 4, 0);
    const batchDim = modelInput.dims[0];
    let maxBatch = Math.max(1, Math.min(MAX_CALIBRATION_BATCH, Math.floor(CALIBRATION_BATCH_BYTES / Math.max(1, perSample))));
    let count = data.count;
    if (typeof batchDim === 'number') {
      maxBatch = batchDim;
      count = Math.floor(data.count / batchDim) * batchDim;
      if (count === 0) throw new CalibrationError(`input '${data.name}' has a fixed batch of ${batchDim}; give at least ${batchDim} calibration samples (got ${data.count})`);
      if (count !== data.count) warnings.push(`calibration used ${count} of ${data.count} samples (the model's fixed batch is ${batchDim})`);
    }
    const method = options.method ?? 'minmax';
    const ranges = await calibrateRanges(
      original,
      { ...data, count },
      plan.calibrate,
      { method, percentile: options.percentile },
      { maxBatch },
    );
    const params = new Map<string, QuantParams>();
    const clipped: string[] = [];
    for (const [t, { range, min, max }] of ranges) {
      params.set(t, activationParams(range[0], range[1]));
      const span = Math.max(0, max) - Math.min(0, min);
      const kept = Math.max(0, range[1]) - Math.min(0, range[0]);
      if (span > 0 && kept < CLIP_NOTE_FRACTION * span) clipped.push(`'${t}' to ${((100 * kept) / span).toFixed(0)} %`);
    }
    if (clipped.length > 0) {
      warnings.push(
        `${method} calibration cut ${clipped.length} tensor range(s) to under half of what was observed (${clipped.slice(0, 5).join(', ')}${clipped.length > 5 ? ', ...' : ''}); ` +
          'if accuracy drops, try method minmax (inputs with large constant areas, like MNIST backgrounds, mislead the entropy search)',
      );
    }
    const stats = applyQdq(model, plan, params, qdqOptions);
    if (stats.biasClamped > 0) warnings.push(`${stats.biasClamped} bias values exceeded int32 at scale input x weight and were clamped`);
    quantized = plan.quantized;
    keptFloat = plan.keptFloat;
    calibrationReport = {
      method,
      ...(method === 'percentile' ? { percentile: options.percentile ?? DEFAULT_PERCENTILE } : {}),
      samples: count,
      tensors: plan.calibrate.length,
      perChannel,
      weightBits: qdqOptions.weightBits,
    };
  }

  let preprocessing: FoldReport | undefined;
  if (fold) preprocessing = foldPreprocessing(model, fold);
  if (precision === 'fp32' && !fold) notes.push('precision fp32 without foldPreprocessing: the model is re-encoded unchanged');

  const bytes = encodeModel(model);
  let runtime: RuntimeCheck | undefined;
  if (options.verify ?? true) {
    try {
      runtime = await inspectRuntimeGraph(bytes);
    } catch (err) {
      throw new UnsupportedModelError(`the optimized model does not load in onnxruntime: ${(err as Error).message.split('\n')[0]}`, [], { cause: err });
    }
    if (precision === 'int8' && runtime.floatComputeKernels > 0) {
      notes.push(`onnxruntime runs ${runtime.int8Kernels} int8 kernels and ${runtime.floatComputeKernels} float Conv/Gemm/MatMul kernels (see keptFloat for why)`);
    }
  }
  return {
    bytes,
    report: {
      precision,
      target,
      opset,
      sizeBytes: { before: original.length, after: bytes.length },
      quantized,
      keptFloat,
      castsInserted,
      ...(calibrationReport ? { calibration: calibrationReport } : {}),
      ...(preprocessing ? { preprocessing } : {}),
      ...(runtime ? { runtime } : {}),
      warnings,
      notes,
      durationMs: Date.now() - started,
    },
  };
}

async function probeOrExplain(model: ModelProto, shapes?: Record<string, number[]>): Promise<Awaited<ReturnType<typeof probeTensors>>> {
  try {
    return await probeTensors(model, shapes);
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0];
    throw new UnsupportedModelError(
      `onnxruntime could not run the model to read its tensor types (${msg}); if inputs have dynamic dims, give concrete ones with inputShapes`,
      [],
      { cause: err },
    );
  }
}

/** One line per node for people: what was quantized, what stayed float and why. */
export function formatReport(report: OptimizeReport): string {
  const lines: string[] = [];
  lines.push(`precision ${report.precision}, target ${report.target}, opset ${report.opset}; ${report.sizeBytes.before} -> ${report.sizeBytes.after} bytes in ${report.durationMs} ms`);
  if (report.calibration) {
    const c = report.calibration;
    lines.push(`calibration: ${c.method}${c.percentile ? ` ${c.percentile}` : ''} on ${c.samples} samples, ${c.tensors} tensors; weights int8 ${c.perChannel ? 'per channel' : 'per tensor'}, ${c.weightBits} bits`);
  }
  const byKind = new Map<string, number>();
  for (const q of report.quantized) {
    const k = 'kind' in q ? q.kind : 'fp16';
    byKind.set(k, (byKind.get(k) ?? 0) + 1);
  }
  lines.push(`${report.precision === 'fp16' ? 'converted' : 'quantized'}: ${report.quantized.length} nodes (${[...byKind].map(([k, n]) => `${n} ${k}`).join(', ')})`);
  for (const q of report.quantized) lines.push(`  ${q.op.padEnd(18)} ${q.node}${'kind' in q ? ` [${q.kind}]` : ''}`);
  lines.push(`kept float: ${report.keptFloat.length} nodes`);
  for (const k of report.keptFloat) lines.push(`  ${k.op.padEnd(18)} ${k.node}: ${k.reason}`);
  if (report.preprocessing) {
    const p = report.preprocessing;
    lines.push(`preprocessing folded into '${p.input}': ${p.before.type} [${p.before.dims.join(', ')}] -> ${p.after.type} [${p.after.dims.join(', ')}]` +
      (p.bytesPerSampleBefore !== null ? `, ${p.bytesPerSampleBefore} -> ${p.bytesPerSampleAfter} bytes per sample` : ''));
  }
  if (report.runtime) lines.push(`onnxruntime runs: ${Object.entries(report.runtime.ops).map(([op, n]) => `${op} x${n}`).join(', ')}`);
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  for (const n of report.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

