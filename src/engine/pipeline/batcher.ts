import type { ModelInfo } from '../graph/model-info';
import { elementCount, typedArrayCtor, type Feeds, type TensorData, type TypedArray } from '../tensor';
import { LatencyHistogram } from '../telemetry/stats';

/**
 * Dynamic batching: compatible tasks (same shape apart from the batch dimension) run as one
 * inference, and the results are split back in order.
 */
export interface BatchingOptions {
  /** Smallest batch worth waiting for (1 = never wait when a device is free). */
  minBatchSize?: number;
  maxBatchSize?: number;
  /** Longest a task waits for batch-mates (ms). */
  maxDelayMs?: number;
  /** p99 latency the adaptive controller keeps (ms). */
  targetLatencyMs?: number;
  /** Adapt the batch cap to the latency target (true) or always coalesce up to maxBatchSize. */
  adaptive?: boolean;
}

export const DEFAULT_BATCHING: Required<BatchingOptions> = { minBatchSize: 1, maxBatchSize: 32, maxDelayMs: 2, targetLatencyMs: 2, adaptive: true };

/**
 * Why a model cannot be batched, or undefined when it can: every input and output must have the
 * same symbolic first dimension (a fixed batch dimension cannot grow).
 */
export function unbatchableReason(info: ModelInfo): string | undefined {
  const first = info.inputs[0]?.dims[0];
  if (typeof first !== 'string') return `input '${info.inputs[0]?.name}' has a fixed batch dimension (${String(first)})`;
  for (const t of [...info.inputs, ...info.outputs]) {
    if (t.dims[0] !== first) return `${t.name}'s first dimension (${String(t.dims[0])}) is not the batch dimension '${first}'`;
  }
  return undefined;
}

/** Tasks batch together when every input has the same dims after the batch dimension. */
export function shapeKey(info: ModelInfo, feeds: Feeds): string {
  let key = '';
  for (const input of info.inputs) key += feeds[input.name].dims.slice(1).join('x') + ';';
  return key;
}

/**
 * One input tensor holding every task's rows, in task order, in memory from `allocate` (the
 * engine passes its pool, so the batch moves to a worker without another copy or a fresh buffer).
 */
export function concatFeeds(info: ModelInfo, parts: Feeds[], batch: number, allocate: (type: TensorData['type'], dims: number[]) => TensorData = freshTensor): Feeds {
  const out: Feeds = {};
  for (const input of info.inputs) {
    const first = parts[0][input.name];
    const dims = [batch, ...first.dims.slice(1)];
    const data = allocate(first.type, dims).data;
    let offset = 0;
    for (const p of parts) {
      const src = p[input.name].data;
      (data as unknown as { set(a: ArrayLike<number | bigint>, o: number): void }).set(src as unknown as ArrayLike<number | bigint>, offset);
      offset += src.length;
    }
    out[input.name] = { type: first.type, dims, data };
  }
  return out;
}

function freshTensor(type: TensorData['type'], dims: number[]): TensorData {
  return { type, dims, data: new (typedArrayCtor(type))(elementCount(dims)) as TypedArray };
}

/** Each task's rows of every output, as views (no copy) over the batched result. */
export function splitOutputs(outputs: Record<string, TensorData>, sizes: number[]): Array<Record<string, TensorData>> {
  const split: Array<Record<string, TensorData>> = sizes.map(() => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    const total = t.dims[0];
    const rowLength = total ? t.data.length / total : 0;
    let row = 0;
    sizes.forEach((n, i) => {
      split[i][name] = { type: t.type, dims: [n, ...t.dims.slice(1)], data: t.data.subarray(row * rowLength, (row + n) * rowLength) as TypedArray };
      row += n;
    });
  }
  return split;
}

/**
 * Chooses the batch cap and the wait for batch-mates online, TCP-style: quick to back off, careful
 * to grow. Signals, per window of at least 32 batches and 50 ms:
 * - a backlog (more tasks queued behind a batch than fit in it): demand exceeds what the devices
 *   do, and no batch size meets the latency target by shrinking, so grow for throughput;
 * - p99 latency over the target without a backlog: halve the wait, and the cap too when the
 *   batch's own run is a material part of that p99 (RUN_SHARE); when it is not, the latency comes
 *   from elsewhere (hand-offs, the caller, other load on the host), which smaller batches cannot
 *   remove and only add runs to (measured: a 784-128-10 MLP's run of 32 takes ~0.15 ms, and
 *   halving to 8 at a 3-5 ms p99 cut the throughput by a third without lowering p99), so the cap
 *   stays, or grows while batches come out full;
 * - p99 well under the target: grow the cap if batches come out full, else wait a little longer
 *   for batch-mates (never beyond maxDelayMs or a quarter of the target).
 */
/** Share of p99 latency a batch's run (p90) must reach before a smaller batch is expected to lower it. */
export const RUN_SHARE = 0.25;

export class BatchController {
  cap: number;
  /** How long a task may wait for batch-mates while a device is free (ms). */
  delayMs = 0;
  private readonly recent = new LatencyHistogram();
  /** Run times of this window's batches (the device's inference time for the whole batch). */
  private readonly runs = new LatencyHistogram();
  private fullBatches = 0;
  private backlogged = 0;
  private batches = 0;
  private windowStart: number;

  constructor(readonly options: Required<BatchingOptions>, private readonly clock: () => number = Date.now) {
    this.cap = options.adaptive ? Math.max(options.minBatchSize, 1) : options.maxBatchSize;
    // a fixed policy waits the full delay for a full batch, as a count/time batcher does
    if (!options.adaptive) this.delayMs = options.maxDelayMs;
    this.windowStart = clock();
  }

  /** Each completed task's latency (submission to result). */
  onTask(totalMs: number): void {
    this.recent.record(totalMs);
  }

  /** Each completed batch: how long the device took to run it (ms). */
  onRun(runMs: number): void {
    this.runs.record(runMs);
  }

  /** Each dispatched batch: its size and how many compatible tasks were left queued behind it. */
  onBatch(samples: number, queuedBehind: number): void {
    this.batches++;
    if (samples >= this.cap) this.fullBatches++;
    if (queuedBehind >= this.cap) this.backlogged++;
    this.adjust();
  }

  private adjust(): void {
    if (!this.options.adaptive) return;
    if (this.clock() - this.windowStart < 50 || this.batches < 32) return;
    const { minBatchSize, maxBatchSize, targetLatencyMs, maxDelayMs } = this.options;
    const grow = () => (this.cap = Math.min(maxBatchSize, this.cap + Math.max(1, Math.floor(this.cap / 4))));
    const p99 = this.recent.percentileMs(99);
    if (this.backlogged / this.batches > 0.5) grow();
    else if (p99 > targetLatencyMs) {
      this.delayMs /= 2;
      // without run times (none reported) the batch is taken to be the cause
      const runMs = this.runs.count ? this.runs.percentileMs(90) : Infinity;
      if (runMs >= RUN_SHARE * p99) this.cap = Math.max(minBatchSize, Math.floor(this.cap / 2));
      else if (this.fullBatches / this.batches > 0.5) grow();
    } else if (p99 < targetLatencyMs * 0.8) {
      if (this.fullBatches / this.batches > 0.5) grow();
      else if (p99 < targetLatencyMs * 0.5) this.delayMs = Math.min(maxDelayMs, targetLatencyMs / 4, this.delayMs + 0.05);
    }
    this.recent.reset();
    this.runs.reset();
    this.batches = this.fullBatches = this.backlogged = 0;
    this.windowStart = this.clock();
  }
}
