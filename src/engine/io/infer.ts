/**
 * One request end to end: a message payload is prepared into pooled input, run by the engine, and
 * turned into the configured result. Shared by the Node-RED infer node and usable from scripts.
 */
import { performance } from 'perf_hooks';
import type { InferenceEngine, GraphHandle, TaskResult } from '../pipeline/engine';
import type { TensorData, TensorType } from '../tensor';
import { checkTensorInput, copyTensorInto, isTensorInput, prepareInput, releaseInput, type CheckedTensor, type ImageGeometry, type ImageSpec, type TensorAllocator } from './preprocess';
import { splitOutputs } from '../pipeline/batcher';
import { InputError } from '../errors';
import { elementCount } from '../tensor';
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
type EngineLike = Pick<InferenceEngine, 'submit' | 'allocateTensor' | 'releaseTensor'> & Partial<Pick<InferenceEngine, 'preprocess' | 'postprocess' | 'batchCap'>>;

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

/** One request of a group: its payload, when it arrived, and how long it waited before this call. */
export interface GroupRequest {
  payload: unknown;
  startedAt: number;
  waitedMs: number;
}

/**
 * A payload that can share one engine request with others: a single tensor {data, dims, type}
 * (not an image, not an array), on a graph with dynamic batching, a batch dimension and one input.
 */
export function groupable(setup: InferenceSetup, engine: EngineLike, payload: unknown): boolean {
  return isTensorInput(payload) && setup.handle.info.inputs.length === 1 && engine.batchCap?.(setup.handle) !== undefined;
}

/**
 * Requests that arrived together (single tensors, see groupable) as few engine requests: each is
 * checked on its own, so a bad one fails alone; compatible ones (same shape after the batch
 * dimension) are copied into one pooled tensor of at most the graph's current batch cap, run once,
 * and each gets its own rows of the result. One engine request per group instead of one per
 * message: at tens of thousands of small messages a second the per-request engine work (a task,
 * a promise, queueing, statistics) cost more than the inference itself. Outcomes come back in
 * request order, each a result or its own error; the returned promise does not reject.
 */
export async function runInferenceGroup(engine: EngineLike, setup: InferenceSetup, requests: GroupRequest[], allocator = engineAllocator(engine)): Promise<Array<InferenceOutcome | Error>> {
  const input = setup.handle.info.inputs[0];
  const outcomes: Array<InferenceOutcome | Error> = new Array(requests.length);
  const cap = Math.max(1, Math.min(setup.maxBatch, engine.batchCap?.(setup.handle) ?? setup.maxBatch));
  // Checked tensors grouped by their shape after the batch dimension (and type), in arrival order.
  const groups = new Map<string, Array<{ index: number; tensor: CheckedTensor }>>();
  requests.forEach((r, index) => {
    try {
      const tensor = checkTensorInput(r.payload as Parameters<typeof checkTensorInput>[0], input, 'msg.payload');
      if (tensor.dims[0] > setup.maxBatch) throw new InputError(`the batch has ${tensor.dims[0]} rows; at most ${setup.maxBatch} fit (max batch in the graph's preprocessing)`);
      const key = `${tensor.type}:${tensor.dims.slice(1).join('x')}`;
      let group = groups.get(key);
      if (!group) groups.set(key, (group = []));
      group.push({ index, tensor });
    } catch (err) {
      outcomes[index] = err as Error;
    }
  });
  const runs: Array<Promise<void>> = [];
  for (const members of groups.values()) {
    let start = 0;
    while (start < members.length) {
      let rows = 0;
      let end = start;
      // at least one per run: a tensor with more rows than the cap runs alone, as the engine would run it
      while (end < members.length && (end === start || rows + members[end].tensor.dims[0] <= cap)) rows += members[end++].tensor.dims[0];
      runs.push(runGroup(engine, setup, allocator, requests, members.slice(start, end), rows, outcomes));
      start = end;
    }
  }
  await Promise.all(runs);
  return outcomes;
}

async function runGroup(
  engine: EngineLike,
  setup: InferenceSetup,
  allocator: TensorAllocator,
  requests: GroupRequest[],
  members: Array<{ index: number; tensor: CheckedTensor }>,
  rows: number,
  outcomes: Array<InferenceOutcome | Error>,
): Promise<void> {
  const input = setup.handle.info.inputs[0];
  const first = members[0].tensor;
  const perRow = elementCount(first.dims.slice(1));
  const prepare = () => {
    const tensor = allocator.allocateTensor(first.type, [rows, ...first.dims.slice(1)]);
    let offset = 0;
    try {
      for (const m of members) {
        copyTensorInto(m.tensor, tensor.data, offset, 'msg.payload');
        offset += m.tensor.dims[0] * perRow;
      }
    } catch (err) {
      allocator.releaseTensor(tensor);
      throw err;
    }
    return { [input.name]: tensor };
  };
  let feeds: Record<string, TensorData>;
  try {
    feeds = engine.preprocess ? await engine.preprocess(prepare) : prepare();
  } catch (err) {
    // A plain-number item that does not convert fails alone: the others run without it.
    if (members.length > 1) await Promise.all(members.map((m) => runGroup(engine, setup, allocator, requests, [m], m.tensor.dims[0], outcomes)));
    else outcomes[members[0].index] = err as Error;
    return;
  }
  let result: TaskResult;
  try {
    result = await engine.submit(setup.handle, feeds, setup.devices ? { devices: setup.devices } : {});
  } catch (err) {
    for (const m of members) outcomes[m.index] = err as Error;
    return;
  }
  const parts = splitOutputs(result.outputs, members.map((m) => m.tensor.dims[0]));
  const shape = () => members.map((m, i) => shapeResult({ ...result, outputs: parts[i] }, setup.output, false, new Array<null>(m.tensor.dims[0]).fill(null)));
  let shaped: InferencePayload[];
  try {
    shaped = engine.postprocess ? engine.postprocess(shape) : shape();
  } catch (err) {
    // settled here, not by rejecting: the group's other runs may still be in the engine
    for (const m of members) outcomes[m.index] = err as Error;
    return;
  }
  const t = result.timings;
  const done = performance.now();
  members.forEach((m, i) => {
    const r = requests[m.index];
    outcomes[m.index] = {
      payload: shaped[i],
      inference: { device: result.deviceId, queueMs: r.waitedMs + t.queueMs + t.deviceQueueMs, inferMs: t.inferMs, totalMs: done - r.startedAt, batchSize: result.batchSize },
    };
  });
}
