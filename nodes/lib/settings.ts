/**
 * Config-node properties as the editor saved them (strings from text inputs, possibly blank) ->
 * typed settings. A bad value raises ConfigError naming the field and what it accepts.
 */
import { ConfigError } from '../../src/engine/io/errors';
import type { PreprocessOptions, ResizeMode, ChannelOrder, Layout, ImageDtype } from '../../src/engine/io/preprocess';
import type { SoftmaxMode, RawFormat } from '../../src/engine/io/postprocess';
import type { QueuePolicy } from '../../src/engine/pipeline/engine';
import type { DeviceKind } from '../../src/engine/devices/device';
import { DEFAULT_LABELS, DEFAULT_MODEL, resolveConfigPath } from './paths';

type Raw = Record<string, unknown>;

function blank(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && (value.trim() === '' || value.trim().toLowerCase() === 'auto'));
}

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : value === undefined || value === null ? '' : String(value);
}

function optionalInt(def: Raw, field: string, label: string, min = 1): number | undefined {
  const value = def[field];
  if (blank(value)) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${label} must be an integer >= ${min} or blank, got ${JSON.stringify(value)}`);
  return n;
}

function intWithDefault(def: Raw, field: string, label: string, fallback: number, min = 1): number {
  return optionalInt(def, field, label, min) ?? fallback;
}

function choice<T extends string>(def: Raw, field: string, label: string, allowed: readonly T[], fallback: T | undefined): T | undefined {
  const value = def[field];
  if (blank(value)) return fallback;
  if (!allowed.includes(value as T)) throw new ConfigError(`${label} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
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

export const DEVICE_KINDS: readonly DeviceKind[] = ['cpu'];
export const QUEUE_POLICIES: readonly QueuePolicy[] = ['reject', 'drop-oldest', 'drop-newest'];
export const DEFAULT_QUEUE_CAPACITY = 256;

export interface DeviceSettings {
  kind: DeviceKind;
  workers?: number;
  threadsPerWorker?: number;
  maxInFlight?: number;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
}

export function parseDeviceSettings(def: Raw): DeviceSettings {
  return {
    kind: choice(def, 'kind', 'device kind', DEVICE_KINDS, 'cpu')!,
    workers: optionalInt(def, 'workers', 'workers'),
    threadsPerWorker: optionalInt(def, 'threadsPerWorker', 'threads per worker'),
    maxInFlight: optionalInt(def, 'maxInFlight', 'requests in flight'),
    queueCapacity: intWithDefault(def, 'queueCapacity', 'queue capacity', DEFAULT_QUEUE_CAPACITY),
    queuePolicy: choice(def, 'queuePolicy', 'queue policy', QUEUE_POLICIES, 'reject')!,
  };
}

// ------------------------------------------------------------------ ncs2-graph

export type PresetName = 'classification' | 'raw';

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
}

export function parseGraphSettings(def: Raw, userDir: string | undefined): GraphSettings {
  const model = text(def.model);
  const builtInModel = model === '';
  const preset = choice<PresetName>(def, 'preset', 'postprocess preset', ['classification', 'raw'], 'classification')!;
  const labels = text(def.labels);
  const channels = optionalInt(def, 'channels', 'channels');
  if (channels !== undefined && channels !== 1 && channels !== 3) throw new ConfigError(`channels must be 1, 3 or auto, got ${channels}`);
  return {
    modelPath: builtInModel ? DEFAULT_MODEL : resolveConfigPath(model, userDir),
    builtInModel,
    preprocess: {
      resize: choice<ResizeMode>(def, 'resize', 'resize mode', ['stretch', 'letterbox', 'center-crop'], undefined),
      width: optionalInt(def, 'width', 'width'),
      height: optionalInt(def, 'height', 'height'),
      channels: channels as 1 | 3 | undefined,
      channelOrder: choice<ChannelOrder>(def, 'channelOrder', 'channel order', ['RGB', 'BGR'], undefined),
      layout: choice<Layout>(def, 'layout', 'layout', ['NCHW', 'NHWC'], undefined),
      dtype: choice<ImageDtype>(def, 'dtype', 'dtype', ['float32', 'uint8'], undefined),
      scale: optionalNumber(def, 'scale', 'scale'),
      mean: optionalNumberList(def, 'mean', 'mean'),
      std: optionalNumberList(def, 'std', 'std'),
      padValue: optionalInt(def, 'padValue', 'pad value', 0),
      maxInputPixels: optionalInt(def, 'maxInputPixels', 'max input pixels'),
    },
    maxBatch: intWithDefault(def, 'maxBatch', 'max batch', 64),
    preset,
    topK: intWithDefault(def, 'topK', 'top-k', 5),
    labelsPath: labels ? resolveConfigPath(labels, userDir) : builtInModel ? DEFAULT_LABELS : undefined,
    softmax: choice<SoftmaxMode>(def, 'softmax', 'softmax', ['auto', 'always', 'never'], 'auto')!,
    rawFormat: choice<RawFormat>(def, 'rawFormat', 'raw data format', ['array', 'typed'], 'array')!,
    outputName: text(def.output) || undefined,
  };
}
