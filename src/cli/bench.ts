/**
 * `ncs2 bench`: measures a model on this host's devices through the engine, the way an
 * application uses it (many concurrent submitters, results awaited), and reports throughput,
 * latency, counted ops, TOPS and utilization against the device's measured peak.
 */
import * as os from 'os';
import { CpuDevice, InferenceEngine, DEFAULT_BATCHING, ensurePeak, readCachedPeak, peakKey, onnxruntimeVersion, PEAK_PRECISIONS } from '../engine';
import type { Device, Feeds, GraphHandle, EngineStats, BatchingOptions, PeakPrecision, PeakResult } from '../engine';
import { driveEngine, type Progress, type WindowResult, type EventLoopSummary } from './load';
import { resolveInputDims, samplesPerTask, syntheticFeeds, type BenchModel } from './models';

export interface Split {
  workers: number;
  threads: number;
}

/**
 * Worker x thread splits for `devices` CPU devices that use the cores without oversubscribing
 * them: each device gets floor(cores / devices) cores, divided every way into workers x threads.
 * A fixed --workers or --threads leaves one candidate.
 */
export function candidateSplits(cores: number, devices: number, workers?: number, threads?: number): Split[] {
  const perDevice = Math.floor(cores / devices);
  if (workers !== undefined && threads !== undefined) return [{ workers, threads }];
  if (perDevice < 1) {
    throw new RangeError(`--devices ${devices} leaves less than one core per device on this host (${cores} cores); use at most --devices ${cores}, or give --workers and --threads to oversubscribe on purpose`);
  }
  if (workers !== undefined) return [{ workers, threads: Math.max(1, Math.floor(perDevice / workers)) }];
  if (threads !== undefined) return [{ workers: Math.max(1, Math.floor(perDevice / threads)), threads }];
  const splits: Split[] = [];
  for (let w = perDevice; w >= 1; w--) if (perDevice % w === 0) splits.push({ workers: w, threads: perDevice / w });
  return splits;
}

export interface EngineRunConfig extends Split {
  devices: number;
  /** Tasks kept outstanding; 'auto' sizes it from the measured service time. */
  parallel: number | 'auto';
  warmupMs: number;
  durationMs: number;
  /**
   * 'copy': the same plain arrays every task (the engine copies them into pooled memory at
   * hand-off); 'pooled': a fresh engine.allocateTensor per task, filled by the caller.
   */
  feedMode: 'copy' | 'pooled';
  /** The engine's dynamic batching for the graph (single-sample tasks coalesced into batched runs). */
  batching?: BatchingOptions;
}

export type BatchingReport = EngineStats['graphs'][string]['batching'];

export interface EngineRunResult extends WindowResult {
  config: { devices: number; workers: number; threads: number; parallel: number; feedMode: 'copy' | 'pooled' };
  /** Service time per task on a worker, from the engine's statistics (p50, ms). */
  inferMsP50: number;
  /** What dynamic batching did in the measured window (runs, average batch, the controller's cap). */
  batching?: BatchingReport;
}

export interface EngineRunHooks {
  label?: string;
  onProgress?(label: string, p: Progress): void;
  /** Runs on the loaded engine before load starts (peak calibration). */
  beforeLoad?(engine: InferenceEngine, devices: Device[]): Promise<void>;
  /** Gets the engine and graph after the run, before they close. */
  afterRun?(engine: InferenceEngine, handle: GraphHandle): void;
}

export function deviceIds(count: number): string[] {
  return count === 1 ? ['cpu'] : Array.from({ length: count }, (_, i) => `cpu${i}`);
}

/** Short probe that learns the service time before sizing 'auto' in-flight tasks. */
const PROBE_MS = 300;
/** Work (ms) each executor should have queued to hide the hand-off round trip. */
const AUTO_COVER_MS = 2;

/**
 * Outstanding tasks for 'auto': per executor one running, one waiting on the device so it never
 * idles between tasks, and for short tasks enough more to cover AUTO_COVER_MS of hand-off round
 * trip; never more than the devices accept in flight plus one per executor (beyond that tasks
 * only wait in the engine's queue and lengthen latency without adding throughput).
 */
export function autoParallel(devices: Device[], inferMs: number): number {
  let total = 0;
  for (const d of devices) {
    const perExecutor = Math.max(2, Math.ceil(AUTO_COVER_MS / Math.max(inferMs, 1e-3)) + 1);
    total += Math.min(d.maxInFlight + d.parallelism, d.parallelism * perExecutor);
  }
  return total;
}

/**
 * Outstanding single-sample tasks for 'auto' under dynamic batching: per executor one full batch
 * running and one gathering, so the controller can reach any cap up to maxBatchSize. More only
 * lengthens the queue (latency) once the cap is reached.
 */
export function autoBatchParallel(devices: Device[], maxBatchSize: number): number {
  return devices.reduce((n, d) => n + d.parallelism * 2 * maxBatchSize, 0);
}

/** One engine configuration: fresh devices and engine, warm-up, timed window, closed again. */
export async function runEngineConfig(model: BenchModel, dims: Record<string, number[]>, cfg: EngineRunConfig, hooks: EngineRunHooks = {}): Promise<EngineRunResult> {
  const ids = deviceIds(cfg.devices);
  const devices = ids.map((id) => new CpuDevice({ id, workers: cfg.workers, threadsPerWorker: cfg.threads }));
  const engine = new InferenceEngine({ devices });
  try {
    await hooks.beforeLoad?.(engine, devices);
    const maxParallel = devices.reduce((n, d) => n + d.maxInFlight + d.parallelism, 0);
    const batchParallel = cfg.batching ? autoBatchParallel(devices, cfg.batching.maxBatchSize ?? DEFAULT_BATCHING.maxBatchSize) : 0;
    const handle = await engine.loadGraph(model.bytes, {
      name: model.name,
      queueCapacity: Math.max(1024, 2 * maxParallel, 2 * batchParallel),
      ...(cfg.batching ? { batching: cfg.batching } : {}),
    });
    const template = syntheticFeeds(model.info, dims);
    const feeds: () => Feeds =
      cfg.feedMode === 'copy'
        ? () => template
        : () => {
            const f: Feeds = {};
            for (const [name, t] of Object.entries(template)) {
              const pooled = engine.allocateTensor(t.type, t.dims);
              (pooled.data as unknown as { set(src: ArrayLike<number | bigint>): void }).set(t.data as ArrayLike<number | bigint>);
              f[name] = pooled;
            }
            return f;
          };
    const samples = samplesPerTask(dims, model.info);
    const label = hooks.label ?? `${cfg.workers}x${cfg.threads}`;
    const onProgress = hooks.onProgress ? (p: Progress) => hooks.onProgress!(label, p) : undefined;
    let parallel = cfg.parallel;
    let warmupMs = cfg.warmupMs;
    if (parallel === 'auto' && cfg.batching) parallel = batchParallel;
    if (parallel === 'auto') {
      const probeMs = Math.min(PROBE_MS, warmupMs);
      await driveEngine(engine, handle, { parallel: maxParallel, warmupMs: 0, durationMs: probeMs, samplesPerTask: samples, feeds, onProgress });
      parallel = autoParallel(devices, serviceMs(engine));
      warmupMs -= probeMs;
    }
    engine.resetStats();
    const window = await driveEngine(engine, handle, {
      parallel,
      warmupMs,
      durationMs: cfg.durationMs,
      samplesPerTask: samples,
      feeds,
      onProgress,
      onWarm: () => engine.resetStats(),
    });
    hooks.afterRun?.(engine, handle);
    const batching = cfg.batching ? engine.getStats().graphs[handle.id]?.batching : undefined;
    return {
      ...window,
      config: { devices: cfg.devices, workers: cfg.workers, threads: cfg.threads, parallel, feedMode: cfg.feedMode },
      inferMsP50: serviceMs(engine),
      ...(batching ? { batching } : {}),
    };
  } finally {
    await engine.close();
  }
}

/** Median run time per task across the engine's devices, from its statistics. */
function serviceMs(engine: InferenceEngine): number {
  const devices = Object.values(engine.getStats().devices).filter((d) => d.inferMs.count > 0);
  if (devices.length === 0) return 0;
  return devices.reduce((s, d) => s + d.inferMs.p50, 0) / devices.length;
}

export interface BenchOptions {
  devices: number;
  workers?: number;
  threads?: number;
  parallel: number | 'auto';
  durationS: number;
  warmupS: number;
  /** Samples per task, or 'auto': single-sample tasks and the engine's adaptive dynamic batching. */
  batch: number | 'auto';
  /** With batch 'auto': the p99 latency the controller keeps (ms) and the largest batch. */
  targetLatencyMs?: number;
  maxBatchSize?: number;
  shapes: Record<string, number[]>;
  calibrate: boolean;
  onProgress?(label: string, p: Progress): void;
}

export interface PeakInfo {
  precision: PeakPrecision;
  opsPerSec: number;
  tops: number;
  source: NonNullable<PeakResult['source']>;
  /** Share of the cores other processes used while it was measured (null when not recorded). */
  otherLoad: number | null;
  key: string;
  measuredAt: string;
  method: string;
}

export interface BenchResult {
  model: { name: string; description: string; source: string; precision: string; inputs: Array<{ name: string; type: string; dims: number[] }>; opsCountComplete: boolean; unknownOps: string[] };
  /** Inferences (samples) per second. */
  throughput: number;
  tasksPerSec: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number; count: number };
  opsPerInference: number;
  tops: number;
  /** Achieved ops/s over the devices' measured peak for the model's precision; null when unmeasured. */
  utilization: number | null;
  /** Why utilization is null (absent when it is a number). */
  utilizationReason?: string;
  peak: PeakInfo | null;
  simulated: false;
  eventLoopDelayMs: EventLoopSummary;
  completed: number;
  failed: number;
  errors: string[];
  config: { device: 'cpu'; devices: number; workers: number; threads: number; split: 'auto' | 'fixed'; parallel: number; parallelMode: 'auto' | 'fixed'; batch: number | 'auto'; durationS: number; warmupS: number; feedMode: 'copy' };
  /** With --batch auto: what the engine's dynamic batching did in the measured window. */
  batching?: BatchingReport;
  /** What each candidate split measured when --workers auto chose among them. */
  splits: Array<{ workers: number; threads: number; throughput: number; latencyP50Ms: number; parallel: number; chosen: boolean }>;
  host: { cpu: string; cores: number; node: string; onnxruntime: string; loadAverage1m: number };
}

/** Time each candidate split gets when --workers auto compares them. */
function trialMs(durationS: number): number {
  return Math.min(3000, Math.max(500, (durationS * 1000) / 4));
}

export async function runBench(model: BenchModel, opts: BenchOptions): Promise<BenchResult> {
  const auto = opts.batch === 'auto';
  const dims = resolveInputDims(model.info, auto ? 1 : (opts.batch as number), opts.shapes);
  const splits = candidateSplits(os.availableParallelism(), opts.devices, opts.workers, opts.threads);
  const batching: BatchingOptions | undefined = auto
    ? { adaptive: true, ...(opts.targetLatencyMs !== undefined ? { targetLatencyMs: opts.targetLatencyMs } : {}), ...(opts.maxBatchSize !== undefined ? { maxBatchSize: opts.maxBatchSize } : {}) }
    : undefined;
  const base = { devices: opts.devices, parallel: opts.parallel, feedMode: 'copy' as const, batching };
  const trials: BenchResult['splits'] = [];
  let chosen = splits[0];
  if (splits.length > 1) {
    let best = -1;
    for (const split of splits) {
      const r = await runEngineConfig(model, dims, { ...base, ...split, warmupMs: Math.min(500, opts.warmupS * 1000), durationMs: trialMs(opts.durationS) }, { label: `trying ${split.workers}x${split.threads}`, onProgress: opts.onProgress });
      if (r.completed === 0) throw new Error(r.errors[0] ?? `no task completed with ${split.workers}x${split.threads}`);
      trials.push({ ...split, throughput: r.inferencesPerSec, latencyP50Ms: r.latencyMs.p50, parallel: r.config.parallel, chosen: false });
      if (r.inferencesPerSec > best) {
        best = r.inferencesPerSec;
        chosen = split;
      }
    }
    for (const t of trials) t.chosen = t.workers === chosen.workers && t.threads === chosen.threads;
  }

  const precision = model.info.precision;
  let peak: PeakInfo | null = null;
  let utilizationReason: string | undefined;
  let ops = { total: 0, unknownOps: [] as string[] };
  let opsBatch = 1;
  const result = await runEngineConfig(model, dims, { ...base, ...chosen, warmupMs: opts.warmupS * 1000, durationMs: opts.durationS * 1000 }, {
    label: `${chosen.workers}x${chosen.threads}`,
    onProgress: opts.onProgress,
    beforeLoad: async (engine, devices) => {
      const measurable = (PEAK_PRECISIONS as readonly string[]).includes(precision);
      if (!measurable) {
        utilizationReason = `no ${precision} peak is measured for the CPU (calibration covers ${PEAK_PRECISIONS.join(', ')})`;
        return;
      }
      const p = precision as PeakPrecision;
      let sum = 0;
      let info: Omit<PeakInfo, 'opsPerSec' | 'tops'> | undefined;
      for (const device of devices) {
        const r = opts.calibrate ? await ensurePeak(engine, device.id, { precisions: [p] }) : await readCachedPeak(peakKey(device));
        const value = r?.[p];
        if (r?.disturbed?.includes(p)) {
          utilizationReason = `every measurement of the ${p} peak of ${device.id} ran while other processes loaded the host, so none is used; measure again when the host is quieter`;
          return;
        }
        if (!r || value === undefined) {
          utilizationReason = `the ${p} peak of ${device.id} (${device.info.name}) is not measured on this host yet; run without --no-calibrate, or 'ncs2 devices --calibrate'`;
          return;
        }
        sum += value;
        info ??= { precision: p, source: r.source ?? 'cache', otherLoad: r.details?.[p]?.otherLoad ?? null, key: r.key, measuredAt: r.measuredAt, method: r.method };
      }
      peak = { ...info!, opsPerSec: sum, tops: sum / 1e12 };
    },
    afterRun: (_engine, handle) => {
      ops = handle.ops;
      // The op count comes from a probe run with symbolic dims at 1; a fixed batch counts whole.
      const first = handle.info.inputs[0]?.dims[0];
      opsBatch = typeof first === 'number' && first > 0 ? first : 1;
    },
  });
  if (result.completed === 0) throw new Error(result.errors[0] ?? 'no task completed');

  const opsPerInference = ops.total / opsBatch;
  const achieved = result.inferencesPerSec * opsPerInference;
  const peakInfo = peak as PeakInfo | null;
  const utilization = peakInfo ? achieved / peakInfo.opsPerSec : null;
  return {
    model: {
      name: model.name,
      description: model.description,
      source: model.source,
      precision,
      inputs: model.info.inputs.map((i) => ({ name: i.name, type: i.type, dims: dims[i.name] })),
      opsCountComplete: ops.unknownOps.length === 0,
      unknownOps: ops.unknownOps,
    },
    throughput: result.inferencesPerSec,
    tasksPerSec: result.tasksPerSec,
    latencyMs: { p50: result.latencyMs.p50, p95: result.latencyMs.p95, p99: result.latencyMs.p99, max: result.latencyMs.maxMs, mean: result.latencyMs.meanMs, count: result.latencyMs.count },
    opsPerInference,
    tops: achieved / 1e12,
    utilization,
    ...(utilization === null ? { utilizationReason: utilizationReason ?? 'no peak measured' } : {}),
    peak: peakInfo,
    simulated: false,
    eventLoopDelayMs: result.eventLoopDelayMs,
    completed: result.completed,
    failed: result.failed,
    errors: result.errors,
    config: {
      device: 'cpu',
      devices: opts.devices,
      workers: chosen.workers,
      threads: chosen.threads,
      split: splits.length > 1 ? 'auto' : 'fixed',
      parallel: result.config.parallel,
      parallelMode: opts.parallel === 'auto' ? 'auto' : 'fixed',
      batch: auto ? 'auto' : samplesPerTask(dims, model.info),
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      feedMode: 'copy',
    },
    splits: trials,
    ...(result.batching ? { batching: result.batching } : {}),
    host: hostInfo(),
  };
}

export function hostInfo(): BenchResult['host'] {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: os.availableParallelism(),
    node: process.version,
    onnxruntime: onnxruntimeVersion(),
    loadAverage1m: os.loadavg()[0],
  };
}

/** Re-exported for the devices command. */
export { readCachedPeak };
