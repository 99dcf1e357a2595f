/**
 * Single-tensor requests gathered into batched engine runs as they arrive.
 *
 * Each request's rows are checked and copied straight into a pooled batch tensor, so a request
 * costs a check and a copy; the batch leaves as one engine request as soon as it holds the graph's
 * current batch cap, or at the end of the event-loop turn with what it has. Leaving at the cap,
 * rather than with the whole turn's worth, lets a device start on the first batch while later
 * requests of the same burst are still arriving: in a closed loop of messages the runs then stay
 * spread over time instead of bunching into one wave that leaves the event loop idle while it runs.
 */
import { performance } from 'perf_hooks';
import type { InferenceEngine, TaskResult } from '../pipeline/engine';
import { splitOutputs } from '../pipeline/batcher';
import { bytesPerElement, elementCount, type TensorData } from '../tensor';
import { checkTensorInput, copyTensorInto, isTensorInput, type TensorInput } from './preprocess';
import { rawOutputs } from './postprocess';
import { InputError } from '../errors';
import { engineAllocator, shapeResult, type EngineLike, type InferenceOutcome, type InferencePayload, type InferenceSetup } from './infer';

/**
 * A payload that can share an engine request with others: a single tensor {data, dims, type} (not
 * an image, not an array), on a graph with dynamic batching and one input.
 */
export function groupable(setup: InferenceSetup, engine: EngineLike, payload: unknown): payload is TensorInput {
  return isTensorInput(payload) && setup.handle.info.inputs.length === 1 && engine.batchCap?.(setup.handle) !== undefined;
}

/** Receives each request's outcome, in the order its batch completes: a result or its own error. */
export type GatherSettle<T> = (token: T, outcome: InferenceOutcome | Error) => void;

interface OpenBatch<T> {
  /** Dims after the batch dimension: requests batch together only when these match. */
  rowDims: number[];
  perRow: number;
  tensor: TensorData;
  capacity: number;
  rows: number;
  tokens: T[];
  rowCounts: number[];
  startedAt: number[];
  waitedMs: number[];
}

/** What the gatherer needs of the engine: an EngineLike that can also narrow a pooled tensor. */
export type GatherEngine = EngineLike & Pick<InferenceEngine, 'narrowTensor'>;

export class TensorGatherer<T> {
  /** Batches still filling; more than one only while requests of different shapes interleave. */
  private open: Array<OpenBatch<T>> = [];
  private flushScheduled = false;
  private readonly allocator;

  /**
   * `initialBytes`: how much a new batch takes up front (default 4 MiB); a batch of larger rows
   * starts smaller and grows.
   */
  constructor(
    private readonly engine: GatherEngine,
    private readonly setup: InferenceSetup,
    private readonly settle: GatherSettle<T>,
    private readonly initialBytes = 4 * 1024 * 1024,
  ) {
    this.allocator = engineAllocator(engine);
  }

  /** Requests still filling a batch. */
  get pending(): number {
    let n = 0;
    for (const b of this.open) n += b.tokens.length;
    return n;
  }

  /**
   * Adds one request (see groupable). A request that does not fit the model input fails at once
   * with its own error; the others are not affected. `startedAt` (performance.now() when it arrived)
   * and `waitedMs` (time it waited before this call) go into its report.
   */
  add(token: T, payload: TensorInput, startedAt: number, waitedMs: number): void {
    const input = this.setup.handle.info.inputs[0];
    let rows: number;
    let checked;
    try {
      checked = checkTensorInput(payload, input, 'msg.payload');
      rows = checked.dims[0];
      if (rows > this.setup.maxBatch) throw new InputError(`the batch has ${rows} rows; at most ${this.setup.maxBatch} fit (max batch in the graph's preprocessing)`);
    } catch (err) {
      this.settle(token, err as Error);
      return;
    }
    const cap = this.cap();
    let batch = this.openFor(checked.dims);
    if (batch && batch.rows + rows > batch.capacity) {
      if (batch.rows + rows <= cap) this.grow(batch, Math.min(cap, Math.max(batch.capacity * 2, batch.rows + rows)));
      else {
        this.dispatch(batch);
        batch = undefined;
      }
    }
    // a request with more rows than the cap runs alone, as the engine would run it
    batch ??= this.openBatch(checked.dims, rows, cap);
    try {
      copyTensorInto(checked, batch.tensor.data, batch.rows * batch.perRow, 'msg.payload');
    } catch (err) {
      // a plain-number item that does not convert fails alone; rows it wrote are overwritten or cut off
      this.settle(token, err as Error);
      if (batch.rows === 0) this.discard(batch);
      return;
    }
    batch.tokens.push(token);
    batch.rowCounts.push(rows);
    batch.startedAt.push(startedAt);
    batch.waitedMs.push(waitedMs);
    batch.rows += rows;
    if (batch.rows >= cap) this.dispatch(batch);
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  /** Sends every batch still filling (the end of the turn the requests arrived in). */
  readonly flushAll = (): void => {
    this.flushScheduled = false;
    while (this.open.length) this.dispatch(this.open[0]);
  };

  private cap(): number {
    return Math.max(1, Math.min(this.setup.maxBatch, this.engine.batchCap?.(this.setup.handle) ?? this.setup.maxBatch));
  }

  private openFor(dims: number[]): OpenBatch<T> | undefined {
    for (const b of this.open) {
      if (b.rowDims.length !== dims.length - 1) continue;
      let same = true;
      for (let i = 1; i < dims.length && same; i++) same = b.rowDims[i - 1] === dims[i];
      if (same) return b;
    }
    return undefined;
  }

  /**
   * A batch for requests of `dims`' shape, with room for the first request's `rows` and, within
   * `initialBytes`, for more up to the cap: small rows get a full batch at once, large ones (whole
   * images as tensors) grow as requests come (see grow) instead of taking cap x rows up front.
   */
  private openBatch(dims: number[], rows: number, cap: number): OpenBatch<T> {
    const rowDims = dims.slice(1);
    const perRow = elementCount(rowDims);
    const type = this.setup.handle.info.inputs[0].type;
    const fitting = Math.floor(this.initialBytes / Math.max(1, perRow * bytesPerElement(type)));
    const capacity = Math.max(rows, Math.min(cap, fitting));
    const tensor = this.allocator.allocateTensor(type, [capacity, ...rowDims]);
    const batch: OpenBatch<T> = { rowDims, perRow, tensor, capacity, rows: 0, tokens: [], rowCounts: [], startedAt: [], waitedMs: [] };
    this.open.push(batch);
    return batch;
  }

  /** Moves a filling batch to a larger pooled tensor (its rows copied once). */
  private grow(batch: OpenBatch<T>, capacity: number): void {
    const tensor = this.allocator.allocateTensor(batch.tensor.type, [capacity, ...batch.rowDims]);
    (tensor.data as Float32Array).set((batch.tensor.data as Float32Array).subarray(0, batch.rows * batch.perRow));
    this.allocator.releaseTensor(batch.tensor);
    batch.tensor = tensor;
    batch.capacity = capacity;
  }

  private discard(batch: OpenBatch<T>): void {
    this.open.splice(this.open.indexOf(batch), 1);
    this.allocator.releaseTensor(batch.tensor);
  }

  private dispatch(batch: OpenBatch<T>): void {
    this.open.splice(this.open.indexOf(batch), 1);
    if (batch.rows === 0) {
      this.allocator.releaseTensor(batch.tensor);
      return;
    }
    const tensor = batch.rows === batch.capacity ? batch.tensor : this.engine.narrowTensor(batch.tensor, [batch.rows, ...batch.rowDims]);
    const setup = this.setup;
    this.engine.submit(setup.handle, { [setup.handle.info.inputs[0].name]: tensor }, setup.devices ? { devices: setup.devices } : {}).then(
      (result) => this.complete(batch, result),
      (err: Error) => {
        for (const token of batch.tokens) this.settle(token, err);
      },
    );
  }

  private complete(batch: OpenBatch<T>, result: TaskResult): void {
    const { tokens, rowCounts } = batch;
    const output = this.setup.output;
    const shape = () => {
      // raw outputs take each request's rows straight from the batch; the other presets decode views of them
      if (output.kind !== 'raw') return splitOutputs(result.outputs, rowCounts).map((outputs, i) => shapeResult({ ...result, outputs }, output, false, rowGeometry(rowCounts[i])));
      const out: InferencePayload[] = new Array(tokens.length);
      let row = 0;
      for (let i = 0; i < tokens.length; i++) {
        out[i] = rawOutputs(result.outputs, output.format, row, rowCounts[i]);
        row += rowCounts[i];
      }
      return out;
    };
    let shaped: InferencePayload[];
    try {
      shaped = this.engine.postprocess ? this.engine.postprocess(shape) : shape();
    } catch (err) {
      for (const token of tokens) this.settle(token, err as Error);
      return;
    }
    const t = result.timings;
    const done = performance.now();
    for (let i = 0; i < tokens.length; i++) {
      this.settle(tokens[i], {
        payload: shaped[i],
        inference: { device: result.deviceId, queueMs: batch.waitedMs[i] + t.queueMs + t.deviceQueueMs, inferMs: t.inferMs, totalMs: done - batch.startedAt[i], batchSize: result.batchSize },
      });
    }
  }
}

const NO_GEOMETRY: null[][] = [];
/** Tensor rows have no image geometry: one null per row (shared arrays, never written). */
function rowGeometry(rows: number): null[] {
  return (NO_GEOMETRY[rows] ??= new Array<null>(rows).fill(null));
}
