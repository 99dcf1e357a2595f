/**
 * The stages one request goes through: preprocess (decode/resize in sharp's threads), to-device
 * transfer, infer, from-device transfer, postprocess. Each stage has its own bounded concurrency,
 * so while one request is inferred the next is decoded and the previous one postprocessed: the
 * slowest stage sets the pace, not the sum of all of them.
 *
 * Preprocess and postprocess run here (Stage.run / Stage.runSync: slots plus a bounded waiting
 * queue). Infer and the transfers are paced by the devices themselves (requests in flight per
 * device, a stick's USB link), so the engine records what the devices report into Stage.record.
 */
import * as os from 'os';
import { QueueFullError } from '../errors';
import { LatencyHistogram, RateWindow, type LatencySummary } from '../telemetry/stats';

export const STAGES = ['preprocess', 'toDevice', 'infer', 'fromDevice', 'postprocess'] as const;
export type StageName = (typeof STAGES)[number];

export interface StageStats {
  stage: StageName;
  /** False when no registered device has this stage (a CPU device has no transfers): it costs nothing. */
  present: boolean;
  /** Requests the stage works on at once (slots; for infer the devices' executors, for transfers their links). */
  concurrency: number;
  active: number;
  /** Requests waiting for a slot. */
  queued: number;
  /** Most requests that may wait; null when the stage's queue is bounded elsewhere (graph queues, device links). */
  capacity: number | null;
  completed: number;
  failed: number;
  /** Refused because the waiting queue was full. */
  rejected: number;
  /** Share of the stage's slots busy over the sliding window (0..1). */
  busyShare: number;
  /** Time in the stage once it had a slot, per request. */
  serviceMs: LatencySummary;
  /** Time waiting for a slot, per request. */
  waitMs: LatencySummary;
}

/** Busy time is kept in a 10 s sliding window, like the devices' occupancy. */
const WINDOW_MS = 10_000;

export interface StageOptions {
  concurrency: number;
  /** Waiting requests allowed before new ones are refused (null: unbounded here, bounded by its producer). */
  capacity?: number | null;
}

export class Stage {
  concurrency: number;
  capacity: number | null;
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private completed = 0;
  private failed = 0;
  private rejected = 0;
  private readonly service = new LatencyHistogram();
  private readonly wait = new LatencyHistogram();
  private busy = new RateWindow(WINDOW_MS);

  constructor(readonly name: StageName, options: StageOptions) {
    this.concurrency = Math.max(1, Math.floor(options.concurrency));
    this.capacity = options.capacity ?? null;
  }

  /** Changes the slots; waiting requests start at once when slots were added. */
  setConcurrency(n: number): void {
    this.concurrency = Math.max(1, Math.floor(n));
    this.drain();
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Requests that finished the stage so far. */
  get completedCount(): number {
    return this.completed;
  }

  get running(): number {
    return this.active;
  }

  private drain(): void {
    while (this.active < this.concurrency && this.waiting.length) {
      this.active++;
      this.waiting.shift()!();
    }
  }

  /**
   * Runs `fn` when a slot is free. A full waiting queue refuses the request at once
   * (QueueFullError 'rejected: ...'); a failing `fn` frees its slot like a successful one, so a
   * corrupt input never stalls the requests behind it.
   */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const asked = performance.now();
    if (this.active >= this.concurrency) {
      if (this.capacity !== null && this.waiting.length >= this.capacity) {
        this.rejected++;
        throw new QueueFullError(`rejected: the ${this.name} stage has ${this.waiting.length} requests waiting (its capacity) and ${this.active} running; slow the source or raise the capacity`, 'reject');
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    const started = performance.now();
    let ok = false;
    try {
      const value = await fn();
      ok = true;
      return value;
    } finally {
      this.active--;
      this.record(performance.now() - started, started - asked, ok);
      this.drain();
    }
  }

  /** Synchronous work on the main thread (one at a time by nature): measured, never queued. */
  runSync<T>(fn: () => T): T {
    const started = performance.now();
    let ok = false;
    try {
      const value = fn();
      ok = true;
      return value;
    } finally {
      this.record(performance.now() - started, 0, ok);
    }
  }

  /** A request the stage finished, measured elsewhere (a device's infer or transfer times). */
  record(serviceMs: number, waitMs: number, ok = true): void {
    this.service.record(serviceMs);
    this.wait.record(Math.max(0, waitMs));
    this.busy.add(serviceMs);
    if (ok) this.completed++;
    else this.failed++;
  }

  /** Median service time and how many it is taken from: all the engine's tuning reads, every 500 ms. */
  serviceMedian(): { p50: number; count: number } {
    return { p50: this.service.percentileMs(50), count: this.service.count };
  }

  /** Busy milliseconds per second over the window (divide by slots for a share). */
  busyPerSecond(): number {
    return this.busy.perSecond();
  }

  snapshot(override: Partial<Pick<StageStats, 'present' | 'concurrency' | 'active' | 'queued' | 'capacity'>> = {}): StageStats {
    const concurrency = override.concurrency ?? this.concurrency;
    return {
      stage: this.name,
      present: override.present ?? true,
      concurrency,
      active: override.active ?? this.active,
      queued: override.queued ?? this.waiting.length,
      capacity: override.capacity === undefined ? this.capacity : override.capacity,
      completed: this.completed,
      failed: this.failed,
      rejected: this.rejected,
      busyShare: concurrency > 0 ? Math.min(1, this.busy.perSecond() / 1000 / concurrency) : 0,
      serviceMs: this.service.summary(),
      waitMs: this.wait.summary(),
    };
  }

  reset(): void {
    this.completed = this.failed = this.rejected = 0;
    this.service.reset();
    this.wait.reset();
    this.busy = new RateWindow(WINDOW_MS);
  }
}

/** The stage that limits throughput now, and why. */
export interface Bottleneck {
  stage: StageName;
  busyShare: number;
  queued: number;
  reason: string;
}

/**
 * The bottleneck is the busiest present stage (busy share of its slots over the window); a stage
 * with requests waiting wins a tie. Null while nothing has run in the window.
 */
export function findBottleneck(stages: Record<StageName, StageStats>): Bottleneck | null {
  let best: StageStats | undefined;
  for (const name of STAGES) {
    const s = stages[name];
    if (!s.present || s.busyShare <= 0) continue;
    if (!best || s.busyShare > best.busyShare + 1e-9 || (Math.abs(s.busyShare - best.busyShare) <= 1e-9 && s.queued > best.queued)) best = s;
  }
  if (!best) return null;
  const slots = `${best.concurrency} slot${best.concurrency === 1 ? '' : 's'}`;
  return {
    stage: best.stage,
    busyShare: best.busyShare,
    queued: best.queued,
    reason: `${best.stage} kept ${(best.busyShare * 100).toFixed(0)}% of its ${slots} busy over the last ${WINDOW_MS / 1000} s${best.queued ? ` with ${best.queued} waiting` : ''}, the most of any stage`,
  };
}

/** What the stage concurrency was derived from, as getStats() shows it. */
export interface ConcurrencyChoice {
  preprocess: number;
  postprocess: number;
  /** Cores this process may use (os.availableParallelism()). */
  cores: number;
  /** libvips threads sharp gives each image (sharp.concurrency()). */
  sharpThreadsPerImage: number | null;
  /** libuv's threadpool, on which every sharp pipeline runs (UV_THREADPOOL_SIZE, default 4). */
  uvThreadpoolSize: number;
  /** onnxruntime threads of the registered CPU devices (workers x intra-op threads). */
  inferenceThreads: number;
  /** Set by setStageConcurrency (for example from a benchmark's measurement) instead of derived. */
  fixed: boolean;
  /** The most preprocess slots the host allows: min(libuv threadpool, cores), and which of the two it is. */
  cap: number;
  capReason: string;
  /** What the last tuning measured (absent until both stages have enough samples). */
  measured?: { inferPerSec: number; preprocessMs: number; needed: number };
  reason: string;
}

/** libuv's threadpool size as Node reads it (the pool is sized once, on first use). */
export function uvThreadpoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

function sharpConcurrency(): number | null {
  try {
    // Read lazily: the engine itself does not need sharp unless images are decoded.
     
    return (require('sharp') as { concurrency(): number }).concurrency();
  } catch {
    return null;
  }
}

/**
 * The host's cap on preprocess slots, and the starting value: min(libuv threadpool, cores), never
 * below 1 (tuneStageConcurrency lowers it once stage times are measured, when fewer suffice). Why:
 * - every sharp pipeline runs on a libuv threadpool thread, and JPEG entropy decoding is serial,
 *   so one image in decode keeps about one core busy (sharp.concurrency()'s extra libvips threads
 *   help only the resize);
 * - slots beyond libuv's pool would wait inside libuv, where no statistic sees them;
 * - slots beyond the cores only hold more decoded frames (6 MB for 1080p) in memory: the cores
 *   are already shared with the inference workers, which run at a lower OS priority and take
 *   what decoding leaves; fewer slots than cores leave cores idle whenever inference waits for input.
 * Postprocess runs on the main thread (top-k, box decoding): one at a time by nature.
 */
export function chooseStageConcurrency(inferenceThreads: number, cores = os.availableParallelism(), uvPool = uvThreadpoolSize(), sharpThreads = sharpConcurrency()): ConcurrencyChoice {
  const preprocess = Math.max(1, Math.min(uvPool, cores));
  const limit = preprocess === uvPool && uvPool < cores ? `libuv's threadpool (${uvPool})` : `the ${cores} cores`;
  return {
    preprocess,
    postprocess: 1,
    cores,
    sharpThreadsPerImage: sharpThreads,
    uvThreadpoolSize: uvPool,
    inferenceThreads,
    fixed: false,
    cap: preprocess,
    capReason: limit,
    reason: `${preprocess} decodes at once: limited by ${limit}; ${inferenceThreads} inference thread${inferenceThreads === 1 ? '' : 's'} share the cores at lower priority; postprocess runs on the main thread`,
  };
}

/** Samples each stage needs before its measured times steer the slots. */
export const TUNE_MIN_SAMPLES = 20;
/** Headroom over the measured need, so a decode slower than the median does not starve the devices. */
const TUNE_HEADROOM = 1.25;

/**
 * Preprocess slots from measurement (Little's law): the devices take `inferPerSec` requests
 * (executors / infer p50), a decode holds its slot `preprocessMs` (p50), so
 * inferPerSec x preprocessMs / 1000 decodes in flight keep them fed; with headroom, never above the
 * host's cap. Slow inference (a big model, a stick) then gets fewer decodes at once: no loss of
 * throughput, less memory held in decoded frames, less CPU taken from the workers' hand-offs.
 */
export function tuneStageConcurrency(base: ConcurrencyChoice, inferPerSec: number, preprocessMs: number): ConcurrencyChoice {
  if (!(inferPerSec > 0) || !(preprocessMs > 0)) return base;
  const needed = (inferPerSec * preprocessMs) / 1000;
  const preprocess = Math.max(1, Math.min(base.cap, Math.ceil(needed * TUNE_HEADROOM)));
  const capped = preprocess === base.cap && Math.ceil(needed * TUNE_HEADROOM) > base.cap;
  return {
    ...base,
    preprocess,
    measured: { inferPerSec, preprocessMs, needed },
    reason: `${preprocess} decode${preprocess === 1 ? '' : 's'} at once: the devices take ${inferPerSec.toFixed(1)} requests/s and a decode takes ${preprocessMs.toFixed(1)} ms (p50), so ${needed.toFixed(2)} in flight feed them (+${Math.round((TUNE_HEADROOM - 1) * 100)}%)${capped ? `; capped by ${base.capReason}` : ''}; postprocess runs on the main thread`,
  };
}
