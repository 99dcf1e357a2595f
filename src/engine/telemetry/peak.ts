/**
 * A device's peak arithmetic throughput, measured, never assumed.
 *
 * Utilization figures divide achieved ops/s by a device's peak. For the CPU that peak depends on
 * the host (ISA, cache sizes, clock), on how the device splits the cores (workers x intra-op
 * threads) and on the onnxruntime build, so it is measured once per host by running one large
 * GEMM per precision through the same engine path real work takes (loadGraph placed on the
 * device, submit with every worker kept busy), and cached on disk under that key.
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { buildGemm } from '../graph/builder';
import { CpuDevice } from '../devices/cpu/cpu-device';
import type { Device, Precision } from '../devices/device';
import { EngineError } from '../errors';
import type { InferenceEngine, GraphHandle } from '../pipeline/engine';

/** Precisions a GEMM can be built in (buildGemm); the CPU has no native fp16 path to measure. */
export type PeakPrecision = 'fp32' | 'int8';
export const PEAK_PRECISIONS: readonly PeakPrecision[] = ['fp32', 'int8'];

/**
 * One GEMM shape for both precisions: 256x1024 times 1024x1024 (0.54 G ops). Measured on this
 * project's 2-core AVX2 host with onnxruntime-node 1.30 and one intra-op thread: fp32 6.8 ms
 * (79 G ops/s), int8 3.5 ms (156 G ops/s). A few ms per run keeps the per-task hand-off
 * (microseconds) far below 1 % of the run, while larger shapes gained under 4 % and made each
 * run long enough that a 1 s measurement would count too few of them (1024^3 measured lower:
 * 66 G ops/s fp32, 117 int8).
 */
export const PEAK_GEMM = { m: 256, k: 1024, n: 1024 } as const;

export interface PeakMeasurement {
  /** Arithmetic ops per run, counted from the graph (2 x MACs). */
  opsPerRun: number;
  /** Runs completed inside the timed window. */
  runs: number;
  /** Length of the timed window in seconds. */
  seconds: number;
  /** Rate over the whole window (the peak figure is the best of its sub-windows). */
  meanOpsPerSec: number;
  /** Share of the host's cores other processes used meanwhile (0 = none): above 0.2 the figure is suspect. */
  otherLoad: number;
  /** Measurements made for this precision and key so far (a figure from a busy host is retried). */
  attempts: number;
}

export interface PeakResult {
  fp32?: number;
  int8?: number;
  /** ISO time of the measurement. */
  measuredAt: string;
  /** How the figures were obtained, in words a person can check. */
  method: string;
  /** The cache key the figures belong to (host CPU, split, runtime version). */
  key: string;
  /** Per precision: what was counted. Absent when the figure came from a cache written without it. */
  details?: Partial<Record<PeakPrecision, PeakMeasurement>>;
  /** Where ensurePeak took the figures from ('device': a figure the device reports itself, like a stick's published peak). */
  source?: 'measured' | 'cache' | 'device';
  /**
   * Precisions whose every attempt ran while other processes loaded the host: their figures are
   * neither cached nor given to the device (a low peak would make utilization read over 100 %).
   */
  disturbed?: PeakPrecision[];
}

export interface CalibrateOptions {
  precisions?: PeakPrecision[];
  /** Timed window per precision, after a short warm-up (default 1000 ms). */
  durationMs?: number;
  /** Stops the measurement (no more GEMM runs are submitted); it then fails and nothing is kept. */
  signal?: AbortSignal;
}

export interface EnsurePeakOptions extends CalibrateOptions {
  /** Measure again even when the cache has figures for this key, and replace them. */
  refresh?: boolean;
  /**
   * Share of the host's cores other processes may use during a measurement for it to count
   * (default $NCS2_PEAK_MAX_OTHER_LOAD, else 0.2; a CI runner shared with other jobs may raise it).
   */
  maxOtherLoad?: number;
}

interface CacheFile {
  version: 1;
  entries: Record<string, PeakResult>;
}

const CACHE_VERSION = 1;
const DEFAULT_DURATION_MS = 1000;
/**
 * The timed window is cut into this many parts and the best part counts: a burst of another
 * process's work lowers some parts, never raises one. (Counting whole runs per part biases the
 * best upward by at most one run in ~40-70 here.)
 */
const SUB_WINDOWS = 4;
/** Other processes using more than this share of the cores make a measurement suspect. */
const BUSY_OTHER_LOAD = 0.2;
/** Suspect figures are measured again on later calls, this many times at most, keeping the best. */
const MAX_ATTEMPTS = 3;
/** Warm-up before timing: first runs pay for allocation, page faults and thread wake-up. */
const WARMUP_MS = 250;
/**
 * Tasks kept submitted per executor. The engine itself keeps about two in flight per worker for
 * multi-ms tasks; one more waiting in its queue means a finished run is replaced at once.
 */
const SUBMITTED_PER_EXECUTOR = 3;

/** Directory of the on-disk cache: $NCS2_CACHE_DIR, else $XDG_CACHE_HOME/node-red-ncs2, else ~/.cache/node-red-ncs2. */
export function peakCacheDir(): string {
  if (process.env.NCS2_CACHE_DIR) return process.env.NCS2_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'node-red-ncs2');
}

export function peakCachePath(): string {
  return path.join(peakCacheDir(), 'peak.json');
}

let ortVersion: string | undefined;

/**
 * The installed onnxruntime-node version, from its package.json: requiring the package itself
 * would load the native runtime into this (main) thread just to read a string.
 */
export function onnxruntimeVersion(): string {
  if (ortVersion === undefined) {
    try {
      ortVersion = String((require('onnxruntime-node/package.json') as { version?: string }).version ?? 'unknown');
    } catch {
      ortVersion = 'unknown';
    }
  }
  return ortVersion;
}

export interface PeakKeyParts {
  kind: string;
  workers: number;
  threadsPerWorker: number;
}

/**
 * The figures hold for one CPU model and core count, one workers x threads split and one
 * onnxruntime build; any change there means measuring again.
 */
export function peakKeyFor(parts: PeakKeyParts): string {
  const cpu = os.cpus()[0]?.model.trim() || 'unknown CPU';
  return [cpu, `${os.availableParallelism()} cores`, `${parts.kind} ${parts.workers}x${parts.threadsPerWorker}`, `onnxruntime-node ${onnxruntimeVersion()}`].join(' | ');
}

function keyParts(device: Device): PeakKeyParts {
  const workers = Number(device.info.workers ?? device.parallelism);
  const threads = Number(device.info.threadsPerWorker ?? 1);
  return { kind: device.kind, workers, threadsPerWorker: threads };
}

export function peakKey(device: Device): string {
  return peakKeyFor(keyParts(device));
}

async function readCache(): Promise<CacheFile> {
  try {
    const parsed = JSON.parse(await fs.readFile(peakCachePath(), 'utf8')) as Partial<CacheFile>;
    if (parsed.version === CACHE_VERSION && parsed.entries && typeof parsed.entries === 'object') return parsed as CacheFile;
  } catch {
    // Missing or unreadable (corrupt, older format) cache: measuring again is the cure.
  }
  return { version: CACHE_VERSION, entries: {} };
}

/** Cached figures for a key, or undefined when this host has not measured that split. */
export async function readCachedPeak(key: string): Promise<PeakResult | undefined> {
  return (await readCache()).entries[key];
}

/**
 * Merges one entry into the cache file. Re-reading just before writing keeps entries another
 * process added meanwhile; the rename makes the write atomic, so a reader never sees half a file.
 */
async function writeCachedPeak(key: string, result: PeakResult, replace = false): Promise<void> {
  const cache = await readCache();
  cache.entries[key] = mergePeaks(replace ? undefined : cache.entries[key], result);
  await writeCache(cache);
}

async function writeCache(cache: CacheFile): Promise<void> {
  const dir = peakCacheDir();
  await fs.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.peak.${process.pid}.${Date.now()}.tmp`);
  await fs.writeFile(tmp, JSON.stringify(cache, null, 2) + '\n');
  await fs.rename(tmp, peakCachePath());
}

/**
 * A peak is the most the device has been seen to do: per precision the higher figure (with its
 * details) wins, and attempts add up so a host that stays busy stops being re-measured.
 */
export function mergePeaks(before: PeakResult | undefined, next: PeakResult): PeakResult {
  const { source: _source, ...stored } = next;
  if (!before) return stored;
  const merged: PeakResult = { ...before, measuredAt: stored.measuredAt, method: stored.method, key: stored.key, details: { ...before.details } };
  for (const p of PEAK_PRECISIONS) {
    const value = stored[p];
    if (value === undefined) continue;
    const attempts = (before.details?.[p]?.attempts ?? (before[p] !== undefined ? 1 : 0)) + 1;
    const keepOld = before[p] !== undefined && before[p]! >= value;
    const detail = keepOld ? before.details?.[p] : stored.details?.[p];
    if (!keepOld) merged[p] = value;
    if (detail) merged.details![p] = { ...detail, attempts };
  }
  return merged;
}

/** Whether a cached figure should be measured again: missing, or taken on a busy host and not yet retried enough. */
function needsMeasuring(cached: PeakResult | undefined, p: PeakPrecision): boolean {
  const value = cached?.[p];
  if (typeof value !== 'number' || !(value > 0)) return true;
  const d = cached!.details?.[p];
  return !!d && d.otherLoad > BUSY_OTHER_LOAD && (d.attempts ?? 1) < MAX_ATTEMPTS;
}

function applyPeaks(device: Device, result: Pick<PeakResult, PeakPrecision>): void {
  if (!(device instanceof CpuDevice)) return;
  for (const p of PEAK_PRECISIONS) {
    const value = result[p];
    if (value !== undefined) device.setPeakOpsPerSec(p, value);
  }
}

function findDevice(engine: InferenceEngine, deviceId: string): Device {
  const device = engine.getDevice(deviceId);
  if (!device) {
    const ids = engine.listDevices().map((d) => d.id);
    throw new EngineError(`cannot calibrate '${deviceId}': no such device; registered: ${ids.join(', ') || '(none)'}`, 'DEVICE_UNKNOWN');
  }
  return device;
}

/** Inputs in [-1, 1]: the int8 GEMM's activation quantization covers that range. */
function gemmInput(): Float32Array {
  const { m, k } = PEAK_GEMM;
  const data = new Float32Array(m * k);
  let s = 12345;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = (s / 2 ** 31) - 1;
  }
  return data;
}

/** CPU time (ms) all cores spent busy, from os.cpus(). */
function hostBusyMs(): number {
  let busy = 0;
  for (const c of os.cpus()) busy += c.times.user + c.times.nice + c.times.sys + c.times.irq;
  return busy;
}

/**
 * Keeps the device saturated for warm-up + duration and records when each run completed. The
 * figure is the best of SUB_WINDOWS equal parts of the timed window; the mean over the whole
 * window and the load other processes put on the host meanwhile are kept beside it.
 */
async function saturate(engine: InferenceEngine, handle: GraphHandle, device: Device, durationMs: number, signal?: AbortSignal): Promise<{ peak: number; measurement: Omit<PeakMeasurement, 'attempts'> }> {
  const data = gemmInput();
  const feeds = { input: { type: 'float32' as const, dims: [PEAK_GEMM.m, PEAK_GEMM.k], data } };
  const start = performance.now();
  const timedFrom = start + Math.min(WARMUP_MS, durationMs / 2);
  const end = timedFrom + durationMs;
  const completions: number[] = [];
  let hostBefore: number | undefined;
  let ownBefore: NodeJS.CpuUsage | undefined;
  const loop = async (): Promise<void> => {
    while (performance.now() < end && !signal?.aborted) {
      // A plain array is copied into a pooled arena at hand-off, so one array serves every task.
      await engine.submit(handle, feeds, { deviceId: device.id });
      const t = performance.now();
      if (t >= timedFrom && hostBefore === undefined) {
        hostBefore = hostBusyMs();
        ownBefore = process.cpuUsage();
      }
      if (t >= timedFrom && t < end) completions.push(t);
    }
  };
  const submitters = Math.max(2, device.parallelism * SUBMITTED_PER_EXECUTOR);
  await Promise.all(Array.from({ length: submitters }, loop));
  if (signal?.aborted) throw new EngineError(`peak calibration of ${device.id} was interrupted: ${String(signal.reason ?? 'aborted')}`, 'CALIBRATION_INTERRUPTED');
  const wallMs = performance.now() - timedFrom;
  // Our process's CPU (every thread, workers included) against the whole host's: the rest is others'.
  const own = process.cpuUsage(ownBefore);
  const hostMs = hostBefore === undefined ? 0 : hostBusyMs() - hostBefore;
  const otherLoad = Math.max(0, Math.min(1, (hostMs - (own.user + own.system) / 1000) / (os.cpus().length * wallMs)));
  const opsPerRun = handle.ops.total;
  const part = durationMs / SUB_WINDOWS;
  if (completions.length < SUB_WINDOWS * 3) {
    throw new EngineError(`peak calibration of ${device.id} completed only ${completions.length} GEMM runs in ${durationMs} ms; give it a longer duration`, 'CALIBRATION_FAILED');
  }
  let bestRuns = 0;
  for (let i = 0; i < SUB_WINDOWS; i++) {
    const from = timedFrom + i * part;
    const to = from + part;
    bestRuns = Math.max(bestRuns, completions.filter((t) => t >= from && t < to).length);
  }
  return {
    peak: (bestRuns * opsPerRun) / (part / 1000),
    measurement: { opsPerRun, runs: completions.length, seconds: durationMs / 1000, meanOpsPerSec: (completions.length * opsPerRun) / (durationMs / 1000), otherLoad },
  };
}

/**
 * Measures the device's peak ops/s per precision with a large GEMM run through the engine, and
 * gives the figures to the device (CpuDevice.setPeakOpsPerSec) so utilization statistics use
 * them. The device should be otherwise idle: other work on it lowers the figure.
 */
export async function calibratePeak(engine: InferenceEngine, deviceId: string, options: CalibrateOptions = {}): Promise<PeakResult> {
  const device = findDevice(engine, deviceId);
  const precisions = options.precisions ?? [...PEAK_PRECISIONS];
  const durationMs = options.durationMs ?? DEFAULT_DURATION_MS;
  if (!(durationMs > 0)) throw new RangeError(`durationMs must be > 0, got ${durationMs}`);
  const unknown = precisions.filter((p) => !PEAK_PRECISIONS.includes(p));
  if (unknown.length) throw new RangeError(`cannot measure a peak for ${unknown.join(', ')}; measurable precisions: ${PEAK_PRECISIONS.join(', ')}`);
  const result: PeakResult = {
    measuredAt: new Date().toISOString(),
    method: '',
    key: peakKey(device),
    details: {},
  };
  for (const precision of precisions) {
    const model = buildGemm({ ...PEAK_GEMM, precision });
    const handle = await engine.loadGraph(model, { name: `peak-gemm-${precision}`, devices: [device.id] });
    try {
      const { peak, measurement } = await saturate(engine, handle, device, durationMs, options.signal);
      result[precision] = peak;
      result.details![precision] = { ...measurement, attempts: 1 };
    } finally {
      await engine.releaseGraph(handle, { free: true });
    }
  }
  const { m, k, n } = PEAK_GEMM;
  const { workers, threadsPerWorker } = keyParts(device);
  result.method =
    `GEMM ${m}x${k} by ${k}x${n} (fp32 MatMul; int8 QDQ per-channel MatMul) run through the engine on ${device.id} ` +
    `(${workers} worker(s) x ${threadsPerWorker} thread(s)) with every worker kept busy; ` +
    `ops counted from the graph; ${durationMs} ms timed per precision after a ${Math.min(WARMUP_MS, durationMs / 2)} ms warm-up, ` +
    `best of ${SUB_WINDOWS} equal parts`;
  applyPeaks(device, result);
  return result;
}

/**
 * The device's peaks from the on-disk cache when this host has measured its split before,
 * otherwise measured now (calibratePeak) and cached. A device that reports its own peak for every
 * requested precision (a stick's published figure) is left as it is.
 */
export async function ensurePeak(engine: InferenceEngine, deviceId: string, options: EnsurePeakOptions = {}): Promise<PeakResult> {
  const device = findDevice(engine, deviceId);
  const precisions = options.precisions ?? [...PEAK_PRECISIONS];
  const key = peakKey(device);
  if (!(device instanceof CpuDevice)) {
    const own: Partial<Record<Precision, number>> = {};
    for (const p of precisions) own[p] = device.peakOpsPerSec(p);
    if (precisions.every((p) => own[p] !== undefined)) {
      return { ...own, measuredAt: new Date().toISOString(), method: `reported by ${device.id} (${device.info.name})`, key, source: 'device' };
    }
  }
  const cached = options.refresh ? undefined : await readCachedPeak(key);
  const missing = precisions.filter((p) => needsMeasuring(cached, p));
  if (cached && missing.length === 0) {
    applyPeaks(device, cached);
    return { ...cached, key, source: 'cache' };
  }
  const maxOtherLoad = options.maxOtherLoad ?? maxOtherLoadFromEnv();
  const quiet: PeakResult[] = [];
  let todo = options.refresh ? precisions : missing;
  let last: PeakResult | undefined;
  // A figure taken while other work ran is low: measured again now, and never cached.
  for (let attempt = 1; attempt <= MAX_ATTEMPTS && todo.length > 0; attempt++) {
    last = await calibratePeak(engine, deviceId, { ...options, precisions: todo });
    const clean = todo.filter((p) => last!.details![p]!.otherLoad <= maxOtherLoad);
    if (clean.length) quiet.push(onlyPrecisions(last, clean));
    todo = todo.filter((p) => !clean.includes(p));
  }
  for (const [i, result] of quiet.entries()) await writeCachedPeak(key, result, options.refresh && i === 0);
  // the device keeps only quiet figures: calibratePeak gave it every one, so it gets the cache's back
  for (const p of todo) clearPeak(device, p);
  const merged = (await readCachedPeak(key)) ?? { measuredAt: last!.measuredAt, method: last!.method, key };
  applyPeaks(device, merged);
  return { ...merged, key, source: 'measured', ...(todo.length ? { disturbed: todo } : {}) };
}

function maxOtherLoadFromEnv(): number {
  const raw = process.env.NCS2_PEAK_MAX_OTHER_LOAD;
  if (raw === undefined || raw === '') return BUSY_OTHER_LOAD;
  const value = Number(raw);
  if (!(value >= 0 && value <= 1)) throw new RangeError(`NCS2_PEAK_MAX_OTHER_LOAD must be a share of the cores from 0 to 1, got '${raw}'`);
  return value;
}

function onlyPrecisions(result: PeakResult, keep: PeakPrecision[]): PeakResult {
  const out: PeakResult = { measuredAt: result.measuredAt, method: result.method, key: result.key, details: {} };
  for (const p of keep) {
    out[p] = result[p];
    out.details![p] = result.details![p];
  }
  return out;
}

/** A CPU device without a figure for `precision`: its utilization reads null until one is measured. */
function clearPeak(device: Device, precision: PeakPrecision): void {
  if (device instanceof CpuDevice) device.setPeakOpsPerSec(precision, NaN);
}

/**
 * A device did more than its peak: the peak is not a ceiling (measured while the host was busy,
 * or the runtime changed). Drops the figure from the device and the cache, so utilization reads
 * null and the next ensurePeak measures again. Resolves with whether a cached figure was removed.
 */
export async function markPeakStale(device: Device, precision: PeakPrecision): Promise<boolean> {
  clearPeak(device, precision);
  const key = peakKey(device);
  const cache = await readCache();
  const entry = cache.entries[key];
  if (!entry || entry[precision] === undefined) return false;
  delete entry[precision];
  if (entry.details) delete entry.details[precision];
  await writeCache(cache);
  return true;
}

export interface IdlePeakOptions {
  /** How long the engine must have had no work before a measurement starts (ms; default 10 s). */
  idleMs?: number;
  /** How often idleness is checked (ms; default 2 s). */
  checkEveryMs?: number;
  /** Timed window per precision (ms; default 1000). */
  durationMs?: number;
  precisions?: PeakPrecision[];
  /** See EnsurePeakOptions.maxOtherLoad. */
  maxOtherLoad?: number;
  /** A measurement failed or was interrupted (nothing was kept). */
  onError?: (err: Error) => void;
  /** A peak was measured (or read from the cache) and given to the device. */
  onPeak?: (deviceId: string, result: PeakResult) => void;
}

/** The calibration graphs' names (calibratePeak loads them as peak-gemm-<precision>). */
const isPeakGraph = (graphName: string) => graphName.startsWith('peak-gemm-');

/**
 * Gives every CPU device of the engine its peak without a CLI: a cached figure at once, otherwise
 * measured in the background, one device and precision at a time, only after the engine has had
 * no work for `idleMs`. The measurement runs on the device's workers, which the engine already
 * keeps below the main thread's priority; any other task completing meanwhile interrupts it, and
 * an interrupted or disturbed measurement keeps nothing (ensurePeak), so it is tried again at the
 * next idle time. Returns a stop function.
 */
export function measurePeaksWhenIdle(engine: InferenceEngine, options: IdlePeakOptions = {}): () => void {
  const idleMs = options.idleMs ?? 10_000;
  const precisions = options.precisions ?? [...PEAK_PRECISIONS];
  let lastWork = performance.now();
  let running: AbortController | undefined;
  const onTask = (event: { graphName: string }) => {
    if (isPeakGraph(event.graphName)) return;
    lastWork = performance.now();
    running?.abort('other work arrived');
  };
  engine.on('task', onTask);
  const busy = (): boolean => {
    const stats = engine.getStats();
    for (const g of Object.values(stats.graphs)) if (!isPeakGraph(g.name) && (g.queueDepth > 0 || g.waitingForRoom > 0)) return true;
    return Object.values(stats.devices).some((d) => d.inFlight > 0);
  };
  const next = (): { device: CpuDevice; precision: PeakPrecision } | undefined => {
    for (const device of engine.listDevices()) {
      if (!(device instanceof CpuDevice)) continue;
      const precision = precisions.find((p) => !((device.peakOpsPerSec(p) ?? 0) > 0));
      if (precision) return { device, precision };
    }
    return undefined;
  };
  const check = async (): Promise<void> => {
    if (running) return;
    const todo = next();
    if (!todo) return;
    const cached = await readCachedPeak(peakKey(todo.device));
    if (cached && !needsMeasuring(cached, todo.precision)) {
      applyPeaks(todo.device, cached);
      options.onPeak?.(todo.device.id, { ...cached, source: 'cache' });
      return;
    }
    if (performance.now() - lastWork < idleMs || busy()) return;
    running = new AbortController();
    try {
      const result = await ensurePeak(engine, todo.device.id, { precisions: [todo.precision], durationMs: options.durationMs, maxOtherLoad: options.maxOtherLoad, signal: running.signal });
      if (result.disturbed) throw new EngineError(`the ${todo.precision} peak of ${todo.device.id} was disturbed by other processes' load; it is measured again at the next idle time`, 'CALIBRATION_DISTURBED');
      options.onPeak?.(todo.device.id, result);
    } catch (err) {
      lastWork = performance.now(); // a failed attempt waits for the next full idle period
      throw err;
    } finally {
      running = undefined;
    }
  };
  const timer = setInterval(() => {
    check().catch((err: Error) => options.onError?.(err));
  }, options.checkEveryMs ?? 2000);
  timer.unref?.();
  return () => {
    clearInterval(timer);
    engine.off('task', onTask);
    running?.abort('stopped');
  };
}
