/**
 * One request end to end: a message payload is prepared into pooled input, run by the engine, and
 * turned into the configured result. Shared by the Node-RED infer node and usable from scripts.
 */
import { performance } from 'perf_hooks';
import type { InferenceEngine, GraphHandle, TaskResult } from '../pipeline/engine';
import type { TensorData, TensorType } from '../tensor';
import { prepareInput, releaseInput, type ImageGeometry, type ImageSpec, type TensorAllocator } from './preprocess';
import { classify, rawOutputs, type Classification, type ClassificationOptions, type RawFormat, type RawOutput } from './postprocess';
import { decodeDetections, type Detection, type DetectionOptions } from './detection';
import { decodeTextDetection, decodeTextRecognition, type DbOptions, type TextBox, type TextResult } from './ocr';

export type OutputPreset =
  | ({ kind: 'classification' } & ClassificationOptions)
  | { kind: 'raw'; format: RawFormat }
  | ({ kind: 'detection' } & DetectionOptions)
  | ({ kind: 'text-detection' } & DbOptions)
  | { kind: 'text-recognition'; charset: string[]; outputName?: string };

/** Everything fixed when a graph is configured: what the engine runs and how messages map onto it. */
export interface InferenceSetup {
  handle: GraphHandle;
  /** How images fill the model input, or why they cannot. */
  image: ImageSpec | Error;
  maxBatch: number;
  output: OutputPreset;
  /** Devices this setup's tasks may run on (the graph may be shared with users placed elsewhere). */
  devices?: string[];
}

/** Timing as msg.inference carries it. */
export interface InferenceReport {
  device: string;
  /** Waiting before a device started: extra wait the caller measured (e.g. model still loading), the engine's queue and the device's own queue. */
  queueMs: number;
  /** The runtime's time for this request. */
  inferMs: number;
  /** From `startedAt` to the result being ready, preprocessing and postprocessing included. */
  totalMs: number;
  batchSize: number;
}

export type InferencePayload = Classification | Classification[] | Record<string, RawOutput> | Detection[] | Detection[][] | TextBox[] | TextBox[][] | TextResult | TextResult[];

export interface InferenceOutcome {
  payload: InferencePayload;
  inference: InferenceReport;
}

/** The engine's stage runners are optional so a bare submitter (a test double) still works: its stages then run unbounded and unmeasured. */
export type EngineLike = Pick<InferenceEngine, 'submit' | 'allocateTensor' | 'releaseTensor'> & Partial<Pick<InferenceEngine, 'preprocess' | 'postprocess' | 'batchCap'>>;

/** Pooled tensors from the engine; releaseTensor is idempotent and ignores tensors already moved to a device. */
export function engineAllocator(engine: Pick<InferenceEngine, 'allocateTensor' | 'releaseTensor'>): TensorAllocator {
  return {
    allocateTensor: (type: TensorType, dims: number[]) => engine.allocateTensor(type, dims),
    releaseTensor: (tensor: TensorData) => engine.releaseTensor(tensor),
  };
}

/**
 * The configured result for one task. `geometry` is per batch row (how each image was fitted, null
 * for tensor rows): detection boxes go back to source-image pixels through it.
 */
export function shapeResult(result: TaskResult, preset: OutputPreset, fromArray: boolean, geometry: ReadonlyArray<ImageGeometry | null> = []): InferencePayload {
  // One result per sample; an array when the message carried several.
  const one = <T>(rows: T[]): T | T[] => (fromArray || rows.length > 1 ? rows : rows[0]);
  switch (preset.kind) {
    case 'raw':
      return rawOutputs(result.outputs, preset.format);
    case 'detection':
      return one(decodeDetections(result.outputs, preset, geometry.map((g) => ({ geometry: g })))) as Detection[] | Detection[][];
    case 'text-detection':
      return one(decodeTextDetection(result.outputs, geometry, preset)) as TextBox[] | TextBox[][];
    case 'text-recognition':
      return one(decodeTextRecognition(result.outputs, preset.charset, preset.outputName));
    default:
      return one(classify(result.outputs, preset));
  }
}

/**
 * Runs one payload. `startedAt` (performance.now() when the message arrived) and `waitedMs` (time
 * it spent waiting before this call, e.g. for the model to load) go into the report.
 */
export async function runInference(engine: EngineLike, setup: InferenceSetup, payload: unknown, startedAt = performance.now(), waitedMs = 0, allocator = engineAllocator(engine)): Promise<InferenceOutcome> {
  // Stages: preprocess (bounded slots; a corrupt image fails here alone), infer (the engine's
  // queues and devices, transfers included), postprocess; requests overlap across them.
  const prepare = () => prepareInput(allocator, setup.handle.info, payload, { image: setup.image, maxBatch: setup.maxBatch });
  const prepared = engine.preprocess ? await engine.preprocess(prepare) : await prepare();
  let result: TaskResult;
  try {
    result = await engine.submit(setup.handle, prepared.feeds, setup.devices ? { devices: setup.devices } : {});
  } catch (err) {
    releaseInput(allocator, prepared);
    throw err;
  }
  const shape = () => shapeResult(result, setup.output, prepared.fromArray, prepared.geometry);
  const shaped = engine.postprocess ? engine.postprocess(shape) : shape();
  const t = result.timings;
  return {
    payload: shaped,
    inference: {
      device: result.deviceId,
      queueMs: waitedMs + t.queueMs + t.deviceQueueMs,
      inferMs: t.inferMs,
      totalMs: performance.now() - startedAt,
      batchSize: result.batchSize,
    },
  };
}
