import { promises as fs } from 'fs';
import { createHash } from 'crypto';
import { EventEmitter } from 'events';
import type { Device, DeviceGraph, NamedTensor, OutputSpec, Precision, SessionSettings } from '../devices/device';
import { MemoryPool, markPooled, narrowPooled, releasePooled, type MemoryPoolStats } from '../memory/memory-pool';
import { LruCache } from '../graph/lru-cache';
import { readModelInfo, hashModel, ModelFormatError, type ModelInfo } from '../graph/model-info';
import type { OpCount } from '../graph/op-count';
import { createDevice, type DeviceSpec } from '../devices/factory';
import { countModelOpsOffThread } from '../graph/op-count-worker-client';
import { DeadlineExceededError, DeviceError, EngineClosedError, EngineError, InputError, ModelLoadError, QueueFullError } from '../errors';
import { elementCount, bytesPerElement, viewOf, type Feeds, type TensorData } from '../tensor';
import { validateFeeds } from './validate';
import { DeviceStats, type DeviceStatsSnapshot } from '../telemetry/device-stats';
import { EventLoopMonitor, LatencyHistogram, type LatencySummary } from '../telemetry/stats';
import { BatchController, DEFAULT_BATCHING, concatFeeds, shapeKey, splitOutputs, unbatchableReason, type BatchingOptions } from './batcher';
import { DEFAULT_THERMAL_LIMITS, ThermalPolicy, type ThermalDecision, type ThermalLimits } from './thermal-policy';
import { STAGES, Stage, TUNE_MIN_SAMPLES, chooseStageConcurrency, findBottleneck, tuneStageConcurrency, type Bottleneck, type ConcurrencyChoice, type StageName, type StageStats } from './stages';
import { backgroundPriority, lowerBackgroundThreads, type BackgroundPriority } from '../host/thread-priority';

export type QueuePolicy = 'reject' | 'drop-oldest' | 'drop-newest';

export interface EngineOptions {
  devices?: Device[];
  /** Tasks waiting per graph before the queue policy applies. */
  queueCapacity?: number;
  queuePolicy?: QueuePolicy;
  /** Compiled graphs (model x device x session options) kept loaded, least recently used first out. */
  maxCachedGraphs?: number;
  poolSizeMb?: number;
  /** What the user aims for; by default the devices' measured peak. */
  targetTops?: number;
  /** Failed runs are retried this many times on another device. */
  maxRetries?: number;
  /** How long a graph nobody uses stays loaded, so a redeploy finds it (ms). */
  idleGraphMs?: number;
  /** How long a released device stays open, so a redeploy finds it (ms). */
  idleDeviceMs?: number;
  /** Thermal limits applied to every device (a device's own can be set with setThermalLimits). */
  thermal?: Partial<ThermalLimits>;
  /** How often device temperatures are read (ms). */
  thermalIntervalMs?: number;
  /** Requests that may wait for a preprocess slot before new ones are refused (default 1024). */
  preprocessCapacity?: number;
}

export interface GraphOptions {
  session?: SessionSettings;
  queueCapacity?: number;
  queuePolicy?: QueuePolicy;
  /** A readable name for statistics (default: the file name or the hash). */
  name?: string;
  /**
   * Load on these devices (default: every registered device, including ones added later). A model
   * loaded again with another placement is loaded there too (one session per device, shared);
   * queue settings and batching are the graph's, so the latest load's settings apply to all users.
   */
  devices?: string[];
  /** Coalesce compatible tasks into batched runs (true: adaptive defaults). */
  batching?: BatchingOptions | boolean;
}

export interface SubmitOptions {
  /** Give up if the task has not completed this many milliseconds after submission. */
  deadlineMs?: number;
  /** Run only on this device (no retry elsewhere). */
  deviceId?: string;
  /** Run only on these devices (retries stay among them): what a node bound to a device config passes. */
  devices?: string[];
}

export interface TaskTimings {
  /** Waiting in the engine's queue until a device took the task. */
  queueMs: number;
  /** Waiting inside the device (behind other requests in flight). */
  deviceQueueMs: number;
  /** The runtime's own time for this task. */
  inferMs: number;
  /** Submission to result. */
  totalMs: number;
}

/** Emitted as 'task' for every completed task when someone listens (metrics exporters). */
export interface TaskEvent {
  graphId: string;
  graphName: string;
  deviceId: string;
  timings: TaskTimings;
  batchSize: number;
}

export interface TaskResult {
  id: number;
  graphId: string;
  deviceId: string;
  outputs: Record<string, TensorData>;
  timings: TaskTimings;
  batchSize: number;
  retries: number;
}

export interface GraphStats {
  graphId: string;
  name: string;
  precision: Precision;
  opsPerInference: number;
  opsCountComplete: boolean;
  queueDepth: number;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
  submitted: number;
  completed: number;
  failed: number;
  dropped: number;
  rejected: number;
  expired: number;
  retried: number;
  latencyMs: LatencySummary;
  /** Where the graph is loaded and which execution provider runs it (with the reason for any fallback). */
  placement: Record<string, { executionProvider: string; fallbackReason?: string }>;
  /** Devices that could not load it, and why. */
  loadErrors: Record<string, string>;
  batching: { enabled: boolean; reason?: string; cap?: number; delayMs?: number; maxBatchSize?: number; targetLatencyMs?: number; runs: number; avgBatchSize: number };
}

export interface EngineStats {
  deviceCount: number;
  /** Completed inference tasks per second over the sliding window (the original API's "ops"). */
  totalThroughputOpsPerSec: number;
  /** Samples per second (a batched task counts its batch size). */
  totalInferencesPerSec: number;
  /** Arithmetic: completed samples x ops counted from each graph, in 10^12 per second. */
  totalTops: number;
  topsPerDevice: Record<string, number>;
  /** Configured target, or the sum of measured device peaks (null when none is measured). */
  targetTops: number | null;
  /** totalTops / targetTops (null without a target). */
  performanceRatio: number | null;
  simulated: boolean;
  devices: Record<string, DeviceStatsSnapshot & { thermal: ThermalDecision }>;
  graphs: Record<string, GraphStats>;
  eventLoopDelayMs: { p50: number; p99: number; maxMs: number; meanMs: number };
  /** Pooled host memory: 'host' (tensors callers fill) and one pool per device that has one. */
  memory: Record<string, MemoryPoolStats>;
  graphCache: { size: number; capacity: number; hits: number; misses: number; evictions: number; hitRate: number };
  /** The request stages (preprocess, transfers, infer, postprocess), the bottleneck now, and how concurrency was chosen. */
  pipeline: PipelineStats;
}

export interface PipelineStats {
  stages: Record<StageName, StageStats>;
  bottleneck: Bottleneck | null;
  concurrency: ConcurrencyChoice;
}

interface Task {
  id: number;
  graph: GraphEntry;
  feeds: Feeds;
  batchSize: number;
  submittedAt: number;
  dispatchedAt: number;
  deadline?: number;
  deadlineTimer?: NodeJS.Timeout;
  deviceId?: string;
  tried: Set<string>;
  retries: number;
  settled: boolean;
  /** Shape after the batch dimension (and allowed devices), for grouping into batches. */
  shapeKey?: string;
  allowed?: string[];
  resolve(result: TaskResult): void;
  reject(error: Error): void;
}

interface GraphEntry {
  id: string;
  name: string;
  hash: string;
  model: Uint8Array;
  info: ModelInfo;
  ops: OpCount;
  session: SessionSettings;
  sessionKey: string;
  queue: Task[];
  queueCapacity: number;
  queuePolicy: QueuePolicy;
  refs: number;
  inFlight: number;
  loaded: Map<string, DeviceGraph>;
  loading: Map<string, Promise<DeviceGraph | undefined>>;
  loadErrors: Map<string, string>;
  counts: { submitted: number; completed: number; failed: number; dropped: number; rejected: number; expired: number; retried: number };
  latency: LatencyHistogram;
  /** Samples per device for the one-output-buffer-per-output pre-binding (batch dim symbol). */
  batchSymbol?: string;
  drained?: () => void;
  idleTimer?: NodeJS.Timeout;
  placement?: string[];
  batching?: { options: Required<BatchingOptions>; controller: BatchController };
  /** Why batching was asked for but is off (a fixed batch dimension). */
  unbatchedReason?: string;
  batchTimer?: NodeJS.Timeout;
  /** A short batch gathering until the end of this event-loop turn (see takeGroup), and that turn's end. */
  gatherImmediate?: NodeJS.Immediate;
  gatherDue?: boolean;
  batches: number;
  batchedSamples: number;
  /** serviceMs keys per device id, built once: the scheduler looks them up for every task. */
  serviceKeys: Map<string, string>;
}

export interface GraphHandle {
  readonly id: string;
  readonly name: string;
  readonly info: ModelInfo;
  readonly ops: OpCount;
}

const SERVICE_EWMA = 0.2;
const IN_FLIGHT_COVER_MS = 2;
const SLOWDOWN_MIN_SAMPLES = 20;
const MAX_REMOVED_SHOWN = 8;

function now(): number {
  return performance.now();
}

/**
 * The engine: graphs, per-graph bounded queues, and a scheduler that hands each task to the
 * device expected to finish it first. One per process (see getEngine); config nodes and scripts
 * share it by reference.
 */
export class InferenceEngine extends EventEmitter {
  private readonly devices = new Map<string, Device>();
  private readonly deviceRefs = new Map<string, { key: string; refs: number; idleTimer?: NodeJS.Timeout }>();
  private readonly stats = new Map<string, DeviceStats>();
  /** Requests in flight per device object (an id can be reused by a replacement device). */
  private readonly busy = new Map<Device, number>();
  private readonly serviceMs = new Map<string, number>();
  /**
   * Smoothed service time per device, graph and load level (executors busy), with the best seen:
   * slower than the best at the same load means the device itself slowed down (throttling).
   */
  private readonly serviceAtLoad = new Map<string, { ewma: number; best: number; samples: number }>();
  private readonly thermal = new Map<string, ThermalPolicy>();
  private readonly removedStats: string[] = [];
  private readonly thermalTimer: NodeJS.Timeout;
  /** Requests through preprocess and infer when background threads were last looked for (see lowerBackgroundThreads). */
  private workedAtLastRenice = 0;
  private readonly graphs = new Map<string, GraphEntry>();
  private readonly loadingGraphs = new Map<string, Promise<GraphEntry>>();
  private readonly cache: LruCache<string, { graph: GraphEntry; deviceId: string }>;
  readonly pool: MemoryPool;
  private readonly eventLoop = new EventLoopMonitor();
  private nextTaskId = 1;
  private closed = false;
  private pumping = false;
  /**
   * The request stages. preprocess and postprocess run callers' work (runInference) in bounded
   * slots; infer and the transfers record what the devices report (their concurrency is the
   * devices' executors and links).
   */
  readonly stages: Record<StageName, Stage>;
  private concurrency: ConcurrencyChoice;

  /** How decode and inference threads yield to the main thread (NCS2_BACKGROUND_PRIORITY; a bad value fails here). */
  private readonly backgroundPriority: BackgroundPriority = backgroundPriority();

  constructor(private readonly options: EngineOptions = {}) {
    super();
    this.pool = new MemoryPool({ deviceId: 'host', poolSizeMb: options.poolSizeMb ?? 512 });
    this.cache = new LruCache(options.maxCachedGraphs ?? 10, (_key, { graph, deviceId }) => this.evict(graph, deviceId));
    this.concurrency = chooseStageConcurrency(0);
    this.stages = {
      preprocess: new Stage('preprocess', { concurrency: this.concurrency.preprocess, capacity: options.preprocessCapacity ?? 1024 }),
      toDevice: new Stage('toDevice', { concurrency: 1 }),
      infer: new Stage('infer', { concurrency: 1 }),
      fromDevice: new Stage('fromDevice', { concurrency: 1 }),
      postprocess: new Stage('postprocess', { concurrency: this.concurrency.postprocess }),
    };
    for (const d of options.devices ?? []) this.addDevice(d);
    this.eventLoop.start();
    this.thermalTimer = setInterval(() => {
      this.checkThermal();
      this.tuneStages();
      // libvips and libuv start their threads on demand: look for new ones only while requests run.
      const worked = this.stages.preprocess.completedCount + this.stages.infer.completedCount;
      if (worked !== this.workedAtLastRenice) {
        this.workedAtLastRenice = worked;
        void lowerBackgroundThreads(this.backgroundPriority);
      }
    }, options.thermalIntervalMs ?? 500);
    this.thermalTimer.unref();
  }

  // ---------------------------------------------------------------- thermal

  /** Limits for one device (the thermal-guard node sets them). */
  setThermalLimits(deviceId: string, limits: Partial<ThermalLimits>): void {
    this.thermal.set(deviceId, new ThermalPolicy({ ...DEFAULT_THERMAL_LIMITS, ...this.options.thermal, ...limits }));
  }

  thermalState(deviceId: string): ThermalDecision | undefined {
    return this.thermal.get(deviceId)?.decision;
  }

  /** How much slower than its best a device now runs the graphs it runs (1 = as fast as ever). */
  private slowdown(deviceId: string): number {
    let worst = 1;
    for (const [key, { ewma, best, samples }] of this.serviceAtLoad) {
      if (samples >= SLOWDOWN_MIN_SAMPLES && key.startsWith(`${deviceId}|`)) worst = Math.max(worst, ewma / best);
    }
    return worst;
  }

  /** Reads every device's telemetry and moves work away from hot ones (see ThermalPolicy). */
  checkThermal(): void {
    let freed = false;
    for (const device of this.devices.values()) {
      const policy = this.thermal.get(device.id)!;
      const before = policy.state;
      const t = device.telemetry();
      // Measured on a busy 2-core host, a CPU device's ratio read 1.8-42x at a normal temperature,
      // and the quarter share that followed left one worker idle: only devices that throttle
      // silently are judged by it.
      const slowdown = device.throttlesSilently ? this.slowdown(device.id) : undefined;
      const decision = policy.update({ temperatureC: t.temperatureC, throttleLevel: t.throttleLevel, slowdown });
      if (decision.state !== before) {
        this.emit('thermal', { deviceId: device.id, temperatureC: t.temperatureC, ...decision, previous: before });
        freed ||= before === 'critical';
      }
    }
    if (freed) this.pump();
  }

  // ---------------------------------------------------------------- stages

  /** Re-derives stage concurrency from the host and the registered CPU devices (unless set by hand). */
  private chooseConcurrency(): void {
    if (this.concurrency.fixed) return;
    let threads = 0;
    for (const d of this.devices.values()) {
      if (d.kind !== 'cpu') continue;
      const w = Number(d.info.workers ?? d.parallelism);
      const t = Number(d.info.threadsPerWorker ?? 1);
      threads += (Number.isFinite(w) ? w : 1) * (Number.isFinite(t) ? t : 1);
    }
    this.concurrency = chooseStageConcurrency(threads);
    this.stages.preprocess.setConcurrency(this.concurrency.preprocess);
  }

  /**
   * Re-sizes the preprocess slots from measured stage times (see tuneStageConcurrency), within the
   * host's cap; runs on the engine's periodic tick, and does nothing until both the preprocess and
   * the infer stage have TUNE_MIN_SAMPLES samples, or when the slots were set by hand.
   */
  tuneStages(): void {
    if (this.concurrency.fixed) return;
    // Only the medians: a full snapshot summarises every histogram, 8 ms of event loop here each time.
    const pre = this.stages.preprocess.serviceMedian();
    const infer = this.stages.infer.serviceMedian();
    if (pre.count < TUNE_MIN_SAMPLES || infer.count < TUNE_MIN_SAMPLES || infer.p50 <= 0) return;
    let executors = 0;
    for (const d of this.devices.values()) executors += d.parallelism;
    if (executors === 0) return;
    this.concurrency = tuneStageConcurrency(this.concurrency, (executors * 1000) / infer.p50, pre.p50);
    this.stages.preprocess.setConcurrency(this.concurrency.preprocess);
  }

  /**
   * Sets a host stage's slots (a benchmark that measured the best value, or a user); `auto`
   * derives them again from the host. The choice shows in getStats().pipeline.concurrency.
   */
  setStageConcurrency(stage: 'preprocess', slots: number | 'auto', reason?: string): void {
    if (slots === 'auto') {
      this.concurrency.fixed = false;
      this.chooseConcurrency();
      return;
    }
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`stage slots must be a positive integer or 'auto', got ${String(slots)}`);
    this.concurrency = { ...this.concurrency, [stage]: slots, fixed: true, reason: reason ?? `set to ${slots} by setStageConcurrency` };
    this.stages[stage].setConcurrency(slots);
  }

  /** Runs a request's preprocessing in the preprocess stage's bounded slots. */
  preprocess<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.stages.preprocess.run(fn);
  }

  /** Runs a request's (synchronous) postprocessing, measured as the postprocess stage. */
  postprocess<T>(fn: () => T): T {
    return this.stages.postprocess.runSync(fn);
  }

  // ---------------------------------------------------------------- devices

  addDevice(device: Device): void {
    if (this.devices.has(device.id)) throw new EngineError(`a device with id '${device.id}' is already registered`, 'DEVICE_EXISTS');
    this.devices.set(device.id, device);
    this.stats.set(device.id, new DeviceStats(device));
    this.busy.set(device, 0);
    if (!this.thermal.has(device.id)) this.setThermalLimits(device.id, {});
    // Graphs already in use load onto the new device in the background.
    for (const g of this.graphs.values()) if (g.refs > 0 && this.placed(g, device)) void this.ensureLoaded(g, device);
    this.chooseConcurrency();
    this.emit('devices');
  }

  /**
   * Hot-unplug: the device takes no new work; tasks it was running fail there and are retried on
   * the remaining devices by the normal retry path.
   */
  async removeDevice(id: string): Promise<void> {
    const device = this.devices.get(id);
    if (!device) return;
    const stats = this.stats.get(id)!;
    this.devices.delete(id);
    for (const g of this.graphs.values()) {
      g.loaded.delete(id);
      g.loading.delete(id);
      g.serviceKeys.delete(id);
      this.cache.delete(this.cacheKey(g, id));
    }
    stats.markRemoved();
    this.removedStats.push(id);
    // removed devices stay visible in statistics (marked removed), the most recent few only
    while (this.removedStats.length > MAX_REMOVED_SHOWN) {
      const old = this.removedStats.shift()!;
      if (!this.devices.has(old)) {
        this.stats.delete(old);
        this.thermal.delete(old);
      }
    }
    this.forgetServiceTimes((key) => key.split('|')[0] === id);
    await device.close();
    this.busy.delete(device);
    this.chooseConcurrency();
    this.emit('devices');
    this.pump();
  }

  /**
   * Reference-counted devices for config nodes (the MQTT broker node's register/deregister
   * pattern): the first user creates the device, later users with the same spec share it, and a
   * redeploy that releases and re-acquires within `idleDeviceMs` keeps it (and its loaded graphs).
   */
  acquireDevice(spec: DeviceSpec & { id: string }): Device {
    const key = JSON.stringify(spec);
    const held = this.deviceRefs.get(spec.id);
    if (held && held.key === key && this.devices.has(spec.id)) {
      held.refs++;
      clearTimeout(held.idleTimer);
      return this.devices.get(spec.id)!;
    }
    if (held) {
      clearTimeout(held.idleTimer);
      this.deviceRefs.delete(spec.id);
      void this.removeDevice(spec.id);
    }
    const device = createDevice(spec);
    this.deviceRefs.set(spec.id, { key, refs: 1 });
    this.addDevice(device);
    return device;
  }

  releaseDevice(id: string, options: { free?: boolean } = {}): Promise<void> {
    const held = this.deviceRefs.get(id);
    if (!held || held.refs === 0 || --held.refs > 0) return Promise.resolve();
    const free = () => {
      if (this.deviceRefs.get(id) !== held || held.refs > 0) return Promise.resolve();
      this.deviceRefs.delete(id);
      return this.removeDevice(id);
    };
    if (options.free) return free();
    clearTimeout(held.idleTimer);
    held.idleTimer = setTimeout(() => void free(), this.options.idleDeviceMs ?? 60_000);
    held.idleTimer.unref?.();
    return Promise.resolve();
  }

  listDevices(): Device[] {
    return [...this.devices.values()];
  }

  getDevice(id: string): Device | undefined {
    return this.devices.get(id);
  }

  // ---------------------------------------------------------------- graphs

  private cacheKey(g: GraphEntry, deviceId: string): string {
    return `${g.hash}|${deviceId}|${g.sessionKey}`;
  }

  /**
   * Loads a model (path or bytes) on every device. Loading the same content with the same options
   * again returns the same graph (a cache hit) and adds a reference; release() drops it.
   */
  async loadGraph(model: string | Uint8Array, options: GraphOptions = {}): Promise<GraphHandle> {
    if (this.closed) throw new EngineClosedError();
    const bytes = typeof model === 'string' ? await readModelFile(model) : model;
    const session = options.session ?? {};
    const sessionKey = JSON.stringify({ ep: session.executionProviders ?? ['cpu'], opt: session.graphOptimizationLevel ?? 'all' });
    const hash = hashModel(bytes);
    const id = createHash('sha256').update(hash).update(sessionKey).digest('hex').slice(0, 16);
    const existing = this.graphs.get(id) ?? (await this.loadingGraphs.get(id));
    if (existing && this.graphs.has(id)) {
      existing.refs++;
      clearTimeout(existing.idleTimer);
      for (const deviceId of this.devices.keys()) this.cache.get(this.cacheKey(existing, deviceId));
      // One model, one set of sessions: a user placing it elsewhere widens the placement, and
      // its tasks say where they may run (SubmitOptions.devices).
      if (existing.placement) existing.placement = options.devices ? [...new Set([...existing.placement, ...options.devices])] : undefined;
      this.fillPlacement(existing);
      if (options.queueCapacity) existing.queueCapacity = options.queueCapacity;
      if (options.queuePolicy) existing.queuePolicy = options.queuePolicy;
      if (options.batching !== undefined) this.configureBatching(existing, options.batching);
      return this.handle(existing);
    }
    const loading = this.createGraph(id, hash, bytes, model, session, sessionKey, options);
    this.loadingGraphs.set(id, loading);
    try {
      const graph = await loading;
      return this.handle(graph);
    } finally {
      this.loadingGraphs.delete(id);
    }
  }

  private async createGraph(id: string, hash: string, bytes: Uint8Array, source: string | Uint8Array, session: SessionSettings, sessionKey: string, options: GraphOptions): Promise<GraphEntry> {
    const where = typeof source === 'string' ? source : `${bytes.byteLength} bytes`;
    let info: ModelInfo;
    try {
      info = readModelInfo(bytes);
    } catch (err) {
      if (err instanceof ModelFormatError) throw new ModelLoadError(`cannot load model from ${where}: ${err.message}`);
      throw err;
    }
    let ops: OpCount;
    try {
      ops = await countModelOpsOffThread(bytes);
    } catch (err) {
      throw new ModelLoadError(`cannot load model from ${where}: onnxruntime could not run it (${(err as Error).message.split('\n')[0]})`);
    }
    const graph: GraphEntry = {
      id,
      name: options.name ?? (typeof source === 'string' ? source.split('/').pop()! : hash.slice(0, 12)),
      hash,
      model: bytes,
      info,
      ops,
      session,
      sessionKey,
      queue: [],
      queueCapacity: options.queueCapacity ?? this.options.queueCapacity ?? 1024,
      queuePolicy: options.queuePolicy ?? this.options.queuePolicy ?? 'reject',
      refs: 1,
      inFlight: 0,
      loaded: new Map(),
      loading: new Map(),
      loadErrors: new Map(),
      counts: { submitted: 0, completed: 0, failed: 0, dropped: 0, rejected: 0, expired: 0, retried: 0 },
      latency: new LatencyHistogram(),
      placement: options.devices,
      batches: 0,
      batchedSamples: 0,
      serviceKeys: new Map(),
    };
    this.configureBatching(graph, options.batching);
    const firstInput = info.inputs[0];
    if (firstInput && typeof firstInput.dims[0] === 'string') graph.batchSymbol = firstInput.dims[0];
    const targets = [...this.devices.values()].filter((d) => this.placed(graph, d));
    if (graph.placement && targets.length === 0) {
      throw new ModelLoadError(`none of the devices ${graph.placement.join(', ')} chosen for ${graph.name} is registered; registered: ${[...this.devices.keys()].join(', ') || '(none)'}`);
    }
    const results = await Promise.all(targets.map((d) => this.ensureLoaded(graph, d)));
    if (targets.length > 0 && results.every((r) => r === undefined)) {
      const reasons = [...graph.loadErrors.entries()].map(([d, m]) => `${d}: ${m}`).join('; ');
      throw new ModelLoadError(`cannot load model from ${where} on any device (${reasons})`);
    }
    this.graphs.set(id, graph);
    return graph;
  }

  private configureBatching(graph: GraphEntry, batching: BatchingOptions | boolean | undefined): void {
    graph.batching = undefined;
    graph.unbatchedReason = undefined;
    if (!batching) return;
    const reason = unbatchableReason(graph.info);
    if (reason) {
      graph.unbatchedReason = `runs unbatched: ${reason}`;
      this.emit('warning', new InputError(`${graph.name} ${graph.unbatchedReason}`));
      return;
    }
    const options = { ...DEFAULT_BATCHING, ...(batching === true ? {} : batching) };
    graph.batching = { options, controller: new BatchController(options) };
  }

  private placed(graph: GraphEntry, device: Device): boolean {
    return !graph.placement || graph.placement.includes(device.id);
  }

  /** Loads a graph onto placed devices it is missing from (added later, or pushed out of the cache). */
  private fillPlacement(graph: GraphEntry): void {
    for (const device of this.devices.values()) {
      if (this.placed(graph, device) && !graph.loaded.has(device.id) && !graph.loading.has(device.id) && !graph.loadErrors.has(device.id)) {
        void this.ensureLoaded(graph, device);
      }
    }
  }

  private ensureLoaded(graph: GraphEntry, device: Device): Promise<DeviceGraph | undefined> {
    const have = graph.loaded.get(device.id);
    if (have) return Promise.resolve(have);
    let loading = graph.loading.get(device.id);
    if (loading) return loading;
    const key = this.cacheKey(graph, device.id);
    this.cache.get(key); // counts the miss
    loading = device
      .load({ key, model: graph.model, session: graph.session })
      .then(
        (dg) => {
          if (!this.devices.has(device.id)) return undefined;
          graph.loaded.set(device.id, dg);
          graph.loadErrors.delete(device.id);
          if (dg.fallbackReason) this.emit('warning', new ModelLoadError(`${graph.name} on ${device.id}: ${dg.fallbackReason}`));
          this.cache.set(key, { graph, deviceId: device.id });
          this.pump();
          return dg;
        },
        (err: Error) => {
          graph.loadErrors.set(device.id, err.message);
          this.emit('warning', new ModelLoadError(`${graph.name} could not be loaded on ${device.id}: ${err.message}`));
          return undefined;
        },
      )
      .finally(() => graph.loading.delete(device.id));
    graph.loading.set(device.id, loading);
    return loading;
  }

  private evict(graph: GraphEntry, deviceId: string): void {
    graph.loaded.delete(deviceId);
    void this.devices.get(deviceId)?.unload(this.cacheKey(graph, deviceId));
    // An idle graph pushed out of the cache everywhere is forgotten; one in use reloads on demand.
    if (graph.refs === 0 && graph.loaded.size === 0 && graph.loading.size === 0) this.freeGraph(graph);
  }

  private handle(g: GraphEntry): GraphHandle {
    return { id: g.id, name: g.name, info: g.info, ops: g.ops };
  }

  getGraph(id: string): GraphHandle | undefined {
    const g = this.graphs.get(id);
    return g && this.handle(g);
  }

  /**
   * Drops one reference. When the last one goes, queued and running tasks finish first; then the
   * graph either stays loaded but idle for `idleMs` (a redeploy that loads it again reloads
   * nothing: a cache hit), or, with `{ free: true }` (a node deleted for good), is unloaded now.
   */
  async releaseGraph(handle: GraphHandle | string, options: { free?: boolean } = {}): Promise<void> {
    const id = typeof handle === 'string' ? handle : handle.id;
    const g = this.graphs.get(id);
    if (!g || g.refs === 0 || --g.refs > 0) return;
    if (g.queue.length || g.inFlight) await new Promise<void>((resolve) => (g.drained = resolve));
    if (g.refs > 0) return; // re-acquired while draining
    if (options.free) return this.freeGraph(g);
    clearTimeout(g.idleTimer);
    g.idleTimer = setTimeout(() => g.refs === 0 && this.freeGraph(g), this.options.idleGraphMs ?? 60_000);
    g.idleTimer.unref?.();
  }

  private freeGraph(g: GraphEntry): void {
    clearTimeout(g.idleTimer);
    if (this.graphs.get(g.id) !== g) return;
    this.graphs.delete(g.id);
    clearTimeout(g.batchTimer);
    if (g.gatherImmediate) clearImmediate(g.gatherImmediate);
    for (const deviceId of [...g.loaded.keys()]) {
      this.cache.delete(this.cacheKey(g, deviceId));
      this.evict(g, deviceId);
    }
    this.forgetServiceTimes((key) => key.split('|')[1] === g.id);
  }

  /** Service-time records go with their graph or device, so redeploy churn cannot grow them. */
  private forgetServiceTimes(matches: (key: string) => boolean): void {
    for (const key of this.serviceMs.keys()) if (matches(key)) this.serviceMs.delete(key);
    for (const key of this.serviceAtLoad.keys()) if (matches(key)) this.serviceAtLoad.delete(key);
  }

  /**
   * The batch cap the graph's dynamic batching uses now (the adaptive controller's choice), or
   * undefined when the graph does not batch. Cheap: callers read it per request.
   */
  batchCap(graph: GraphHandle | string): number | undefined {
    return this.graphs.get(typeof graph === 'string' ? graph : graph.id)?.batching?.controller.cap;
  }

  graphCount(): number {
    return this.graphs.size;
  }

  // ---------------------------------------------------------------- tensors

  /**
   * A tensor over pooled memory. Handed to submit(), its buffer moves to the device without a copy
   * (and is no longer usable by the caller); preprocessing writes straight into it.
   */
  allocateTensor(type: TensorData['type'], dims: number[]): TensorData {
    const length = elementCount(dims);
    const buffer = this.pool.acquire(length * bytesPerElement(type));
    const data = viewOf(type, buffer, 0, length);
    markPooled(data, this.pool);
    return { type, dims, data };
  }

  /**
   * The leading part of a tensor from allocateTensor, as a tensor of `dims` over the same pooled
   * memory (a batch gathered in a buffer sized for a full one leaves with the rows it has). The
   * original tensor must not be used afterwards.
   */
  narrowTensor(tensor: TensorData, dims: number[]): TensorData {
    const length = elementCount(dims);
    if (length > tensor.data.length) throw new InputError(`cannot narrow a tensor of ${tensor.data.length} elements to dims [${dims.join(', ')}] (${length} elements)`);
    const data = viewOf(tensor.type, tensor.data.buffer as ArrayBuffer, tensor.data.byteOffset, length);
    narrowPooled(tensor.data, data);
    return { type: tensor.type, dims, data };
  }

  private readonly allocate = (type: TensorData['type'], dims: number[]): TensorData => this.allocateTensor(type, dims);

  /** Returns a tensor from allocateTensor that will not be submitted. */
  releaseTensor(tensor: TensorData): void {
    releasePooled(tensor.data);
  }

  private releaseFeeds(feeds: Feeds): void {
    if (typeof feeds !== 'object' || feeds === null) return;
    for (const t of Object.values(feeds)) if (t && ArrayBuffer.isView(t.data)) releasePooled(t.data);
  }

  // ---------------------------------------------------------------- tasks

  submit(graph: GraphHandle | string, feeds: Feeds, options: SubmitOptions = {}): Promise<TaskResult> {
    return new Promise<TaskResult>((resolve, reject) => {
      const refuse = (err: Error) => {
        this.releaseFeeds(feeds);
        reject(err);
      };
      if (this.closed) return refuse(new EngineClosedError());
      const g = this.graphs.get(typeof graph === 'string' ? graph : graph.id);
      if (!g) return refuse(new InputError(`graph ${typeof graph === 'string' ? graph : graph.id} is not loaded (load it with loadGraph first)`));
      let batchSize: number;
      try {
        batchSize = validateFeeds(g.info, feeds);
      } catch (err) {
        g.counts.rejected++;
        return refuse(err as Error);
      }
      if (options.deviceId && !this.devices.has(options.deviceId)) {
        return refuse(new InputError(`device '${options.deviceId}' is not registered; expected one of ${[...this.devices.keys()].join(', ') || '(none)'}`));
      }
      const t = now();
      const task: Task = {
        id: this.nextTaskId++,
        graph: g,
        feeds,
        batchSize,
        submittedAt: t,
        dispatchedAt: 0,
        deviceId: options.deviceId,
        allowed: options.devices,
        tried: new Set(),
        retries: 0,
        settled: false,
        resolve,
        reject,
      };
      g.counts.submitted++;
      if (g.batching) task.shapeKey = shapeKey(g.info, feeds) + (options.devices?.join(',') ?? '');
      if (options.deadlineMs !== undefined) {
        task.deadline = t + options.deadlineMs;
        task.deadlineTimer = setTimeout(() => this.expire(task), options.deadlineMs);
        task.deadlineTimer.unref?.();
      }
      this.enqueue(task);
    });
  }

  private enqueue(task: Task): void {
    const g = task.graph;
    if (g.queue.length >= g.queueCapacity) {
      const policy = g.queuePolicy;
      if (policy === 'drop-oldest') {
        const oldest = g.queue.shift()!;
        g.counts.dropped++;
        this.fail(oldest, new QueueFullError(`dropped: queue of ${g.name} full (${g.queueCapacity}) and a newer task arrived (policy drop-oldest)`, policy));
      } else {
        if (policy === 'drop-newest') g.counts.dropped++;
        else g.counts.rejected++;
        const verb = policy === 'drop-newest' ? 'dropped' : 'rejected';
        this.fail(task, new QueueFullError(`${verb}: queue of ${g.name} is full (${g.queueCapacity} waiting; policy ${policy}); raise queue capacity or requests in flight, or slow the source`, policy));
        return;
      }
    }
    g.queue.push(task);
    this.pump();
  }

  private expire(task: Task): void {
    if (task.settled) return;
    const g = task.graph;
    const index = g.queue.indexOf(task);
    if (index >= 0) g.queue.splice(index, 1);
    g.counts.expired++;
    this.fail(task, new DeadlineExceededError(`task ${task.id} on ${g.name} missed its deadline (${(task.deadline! - task.submittedAt).toFixed(1)} ms); it was ${index >= 0 ? 'still queued' : 'running'}`));
    this.checkDrained(g);
  }

  private fail(task: Task, error: Error): void {
    if (task.settled) return;
    task.settled = true;
    // pooled inputs that never reached a device go back to their pool (moved ones are detached here)
    this.releaseFeeds(task.feeds);
    if (task.deadlineTimer) clearTimeout(task.deadlineTimer);
    task.reject(error);
  }

  /**
   * Expected time for `device` to finish one more task of `g`, from measured service times,
   * stretched for a hot device so it gets a smaller share.
   */
  private expectedFinish(device: Device, g: GraphEntry, share: number): number {
    const service = this.serviceMs.get(this.serviceKey(g, device.id)) ?? 0;
    return ((this.busy.get(device)! + 1) / device.parallelism) * (service / share);
  }

  private serviceKey(g: GraphEntry, deviceId: string): string {
    let key = g.serviceKeys.get(deviceId);
    if (key === undefined) g.serviceKeys.set(deviceId, (key = `${deviceId}|${g.id}`));
    return key;
  }

  /**
   * Requests to keep in flight on a device for a graph: enough to cover the hand-off round trip
   * (about IN_FLIGHT_COVER_MS of work per executor, at least two each), never above the device's
   * cap. Small models need many in flight to keep workers busy; big ones need few, and keeping
   * the rest in the engine's queue lets queue policies (drop-oldest) and other devices act on them.
   */
  private inFlightLimit(device: Device, g: GraphEntry): number {
    // batching: one run per executor plus one waiting, so tasks gather in the queue as batches
    if (g.batching) return Math.min(device.maxInFlight, device.parallelism * 2);
    const service = this.serviceMs.get(this.serviceKey(g, device.id));
    const perExecutor = service ? Math.max(2, Math.ceil(IN_FLIGHT_COVER_MS / service)) : 2;
    return Math.min(device.maxInFlight, device.parallelism * perExecutor);
  }

  /**
   * The device expected to finish the task first. A hot device keeps a share of its slots in
   * proportion to its thermal share, and is passed over while a cooler device that could take the
   * task would finish it sooner even after waiting for a slot: that is what moves work away from it.
   */
  private pickDevice(task: Task): Device | undefined {
    let best: Device | undefined;
    let bestCost = Infinity;
    let coolFull = false;
    for (const device of this.devices.values()) {
      if (!task.graph.loaded.has(device.id)) continue;
      if (task.deviceId && task.deviceId !== device.id) continue;
      if (task.allowed && !task.allowed.includes(device.id)) continue;
      if (task.tried.has(device.id) && task.tried.size < task.graph.loaded.size) continue;
      const share = this.thermal.get(device.id)!.share;
      if (share === 0) continue; // paused at its critical temperature
      // full devices first, without a cost: this runs for every submission while they are full
      const limit = Math.max(1, Math.floor(this.inFlightLimit(device, task.graph) * share));
      if (this.busy.get(device)! >= limit) {
        coolFull ||= share === 1;
        continue;
      }
      const cost = this.expectedFinish(device, task.graph, share);
      if (cost < bestCost || (cost === bestCost && best && this.busy.get(device)! < this.busy.get(best)!)) {
        best = device;
        bestCost = cost;
      }
    }
    if (best && coolFull && this.thermal.get(best.id)!.share < 1 && this.coolestFullCost(task) < bestCost) return undefined;
    return best;
  }

  /** The lowest expected finish among the full, cool devices that could take the task. */
  private coolestFullCost(task: Task): number {
    let lowest = Infinity;
    for (const device of this.devices.values()) {
      if (!task.graph.loaded.has(device.id) || (task.deviceId && task.deviceId !== device.id) || (task.allowed && !task.allowed.includes(device.id))) continue;
      if (task.tried.has(device.id) && task.tried.size < task.graph.loaded.size) continue;
      if (this.thermal.get(device.id)!.share !== 1 || this.busy.get(device)! < this.inFlightLimit(device, task.graph)) continue;
      lowest = Math.min(lowest, this.expectedFinish(device, task.graph, 1));
    }
    return lowest;
  }

  /**
   * Hands queued tasks to free devices, one task per waiting graph per pass, so a busy graph
   * cannot starve another. Runs on every submission and completion: no allocation here.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let progressed = true;
      while (progressed) {
        progressed = false;
        for (const g of this.graphs.values()) {
          // a batch gathering until the end of this turn: its pump comes then (checking on every
          // submission rescanned the queue, quadratic in the batch size)
          if (g.queue.length === 0 || g.gatherImmediate) continue;
          const device = this.pickDevice(g.queue[0]);
          if (!device) {
            if (g.loaded.size < this.devices.size) this.fillPlacement(g);
            if (g.loaded.size === 0 && g.loading.size === 0) this.failUnrunnable(g);
            continue;
          }
          const group = this.takeGroup(g, device);
          if (!group) continue;
          this.start(group, device);
          progressed = true;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Runs a group of tasks (one, or a batch of compatible ones) as one request on `device`, then
   * hands each task its own rows of the result.
   */
  private start(tasks: Task[], device: Device): void {
    const g = tasks[0].graph;
    const stats = this.stats.get(device.id)!;
    const dispatchedAt = now();
    let samples = 0;
    for (const task of tasks) {
      task.dispatchedAt = dispatchedAt;
      task.tried.add(device.id);
      samples += task.batchSize;
    }
    g.inFlight += tasks.length;
    const busy = this.busy.get(device)! + 1;
    this.busy.set(device, busy);
    // service time is compared at equal load and batch size, so slowing down means the device did;
    // the exact size, not a size class: within a power-of-two class a full batch does up to twice
    // the work, which read as a 1.5-2x "slowdown" and put a cool CPU at a quarter share
    const loadKey = `${Math.min(busy, device.parallelism)}|${samples}`;
    stats.onDispatch(tasks.length);
    // a batch is gathered in pooled memory, which moves to the device as it is and comes back to the
    // pool with the results (a fresh buffer per run was most of this path's garbage)
    const feeds = tasks.length === 1 ? tasks[0].feeds : concatFeeds(g.info, tasks.map((t) => t.feeds), samples, this.allocate);
    const inputs: NamedTensor[] = g.info.inputs.map((i) => ({ name: i.name, ...feeds[i.name] }));
    // counted now: pooled inputs are detached once they move to a worker
    let tensorBytesIn = 0;
    for (const t of inputs) tensorBytesIn += t.data.byteLength;
    const waitMs = dispatchedAt - tasks[0].submittedAt;
    device.run({ graphKey: this.cacheKey(g, device.id), inputs, outputs: this.outputSpecs(g, samples) }).then(
      (result) => {
        if (tasks.length > 1) {
          this.releaseFeeds(feeds); // only if the device did not move it (moved buffers go home with the results)
          for (const task of tasks) this.releaseFeeds(task.feeds); // copied into the batch; no retry needs them now
        }
        this.finish(tasks, device);
        this.recordService(this.serviceKey(g, device.id), loadKey, result.inferMs);
        stats.onRun(result.inferMs, samples, g.ops.total, g.loaded.get(device.id)?.precision ?? g.info.precision);
        let tensorBytesOut = 0;
        for (const name in result.outputs) tensorBytesOut += result.outputs[name].data.byteLength;
        stats.onTransfer(result, samples, tensorBytesIn, tensorBytesOut);
        this.stages.infer.record(result.inferMs, waitMs);
        if (result.transfer) {
          this.stages.toDevice.record(result.transfer.toDevice.ms, result.transfer.toDevice.waitMs);
          this.stages.fromDevice.record(result.transfer.fromDevice.ms, result.transfer.fromDevice.waitMs);
        }
        g.batches++;
        g.batchedSamples += samples;
        g.batching?.controller.onRun(result.inferMs);
        const parts = tasks.length === 1 ? [result.outputs] : splitOutputs(result.outputs, tasks.map((t) => t.batchSize));
        const done = now();
        const observed = this.listenerCount('task') > 0;
        tasks.forEach((task, i) => {
          if (task.settled) return;
          const timings: TaskTimings = { queueMs: task.dispatchedAt - task.submittedAt, deviceQueueMs: result.deviceQueueMs, inferMs: result.inferMs, totalMs: done - task.submittedAt };
          stats.onTaskDone(timings.totalMs);
          g.latency.record(timings.totalMs);
          g.batching?.controller.onTask(timings.totalMs);
          g.counts.completed++;
          task.settled = true;
          if (task.deadlineTimer) clearTimeout(task.deadlineTimer);
          task.resolve({ id: task.id, graphId: g.id, deviceId: device.id, outputs: parts[i], timings, batchSize: samples, retries: task.retries });
          if (observed) this.emit('task', { graphId: g.id, graphName: g.name, deviceId: device.id, timings, batchSize: samples } satisfies TaskEvent);
        });
      },
      (err: Error) => {
        if (tasks.length > 1) this.releaseFeeds(feeds);
        this.finish(tasks, device);
        stats.onFail(tasks.length);
        this.stages.infer.record(now() - dispatchedAt, waitMs, false);
        const retries: Task[] = [];
        for (const task of tasks) {
          if (task.settled) continue;
          // A pooled input that moved to a worker which then died is gone: nothing to retry with.
          const inputsIntact = Object.values(task.feeds).every((t) => t.data.buffer.byteLength > 0);
          const canRetry = err instanceof DeviceError && inputsIntact && task.retries < (this.options.maxRetries ?? 1) && !task.deviceId && this.hasOtherDevice(task) && !this.closed;
          if (canRetry) {
            task.retries++;
            g.counts.retried++;
            retries.push(task);
          } else {
            g.counts.failed++;
            this.fail(task, err);
          }
        }
        if (retries.length) {
          stats.onRetry(retries.length);
          g.queue.unshift(...retries); // retries go first: they have waited longest
          this.pump();
        }
      },
    );
  }

  /**
   * The tasks to run next for `g`: the head of its queue, plus (when batching) compatible tasks
   * behind it up to the batch cap. Undefined means "wait for batch-mates" (a timer re-pumps).
   */
  private takeGroup(g: GraphEntry, device: Device): Task[] | undefined {
    const first = g.queue[0];
    const batching = g.batching;
    if (!batching || first.retries > 0 || first.deviceId) return [g.queue.shift()!];
    const cap = batching.controller.cap;
    const picked: number[] = [];
    let samples = 0;
    // bounded scan: a queue of other shapes must not make every dispatch walk the whole queue
    for (let i = 0; i < g.queue.length && i < cap * 4 && samples < cap; i++) {
      const t = g.queue[i];
      if (t.retries > 0 || t.deviceId || t.shapeKey !== first.shapeKey) continue;
      if (picked.length && samples + t.batchSize > cap) continue;
      picked.push(i);
      samples += t.batchSize;
    }
    const waitMs = batching.controller.delayMs - (now() - first.submittedAt);
    if (samples < cap && waitMs > 0) {
      if (!g.batchTimer) {
        g.batchTimer = setTimeout(() => {
          g.batchTimer = undefined;
          this.pump();
        }, waitMs);
        g.batchTimer.unref?.();
      }
      return undefined;
    }
    // Every executor of the device already has a run: another would only wait behind them, so a
    // short batch gathers until the end of this event-loop turn (when the device hands runs over
    // anyway) instead of leaving with the first task resubmitted after a result, which split the
    // load into runs of 1-2 samples alternating with full ones.
    if (samples < cap && !g.gatherDue && this.busy.get(device)! >= device.parallelism) {
      g.gatherImmediate ??= setImmediate(() => {
        g.gatherImmediate = undefined;
        g.gatherDue = true;
        this.pump();
      });
      return undefined;
    }
    g.gatherDue = false;
    let group: Task[];
    if (picked[picked.length - 1] === picked.length - 1) group = g.queue.splice(0, picked.length);
    else {
      group = picked.map((i) => g.queue[i]);
      for (let k = picked.length - 1; k >= 0; k--) g.queue.splice(picked[k], 1);
    }
    batching.controller.onBatch(samples, g.queue.length);
    return group;
  }

  /** No device has the graph and none is loading it: waiting would be forever, so say why now. */
  private failUnrunnable(g: GraphEntry): void {
    const reasons = [...g.loadErrors.entries()].map(([d, m]) => `${d}: ${m}`).join('; ');
    const why = this.devices.size === 0 ? 'no device is registered' : `it could not be loaded (${reasons || 'no placed device'})`;
    for (const task of g.queue.splice(0)) {
      g.counts.failed++;
      this.fail(task, new DeviceError(`no device can run ${g.name}: ${why}`, 'none'));
    }
    this.checkDrained(g);
  }

  private recordService(key: string, loadLevel: string, ms: number): void {
    const prev = this.serviceMs.get(key);
    this.serviceMs.set(key, prev === undefined ? ms : prev + SERVICE_EWMA * (ms - prev));
    const atLoad = this.serviceAtLoad.get(`${key}|${loadLevel}`);
    if (!atLoad) {
      this.serviceAtLoad.set(`${key}|${loadLevel}`, { ewma: ms, best: ms, samples: 1 });
      return;
    }
    atLoad.ewma += SERVICE_EWMA * (ms - atLoad.ewma);
    atLoad.samples++;
    // the best counts only once the average has settled
    if (atLoad.samples <= SLOWDOWN_MIN_SAMPLES || atLoad.ewma < atLoad.best) atLoad.best = atLoad.ewma;
  }

  private hasOtherDevice(task: Task): boolean {
    for (const id of task.graph.loaded.keys()) if (!task.tried.has(id) && this.devices.has(id) && (!task.allowed || task.allowed.includes(id))) return true;
    return false;
  }

  private finish(tasks: Task[], device: Device): void {
    const task = tasks[0];
    task.graph.inFlight -= tasks.length;
    if (this.busy.has(device)) this.busy.set(device, this.busy.get(device)! - 1);
    this.checkDrained(task.graph);
    this.pump();
  }

  private checkDrained(g: GraphEntry): void {
    if (g.drained && g.queue.length === 0 && g.inFlight === 0) {
      const drained = g.drained;
      g.drained = undefined;
      drained();
    }
  }

  /** Output shapes known once the batch size is, so devices can bind pooled memory for them. */
  private outputSpecs(g: GraphEntry, batch: number): OutputSpec[] | undefined {
    const specs: OutputSpec[] = [];
    for (const output of g.info.outputs) {
      if (output.type === 'string') return undefined;
      const dims: number[] = [];
      for (const d of output.dims) {
        if (typeof d === 'number' && d > 0) dims.push(d);
        else if (d === g.batchSymbol) dims.push(batch);
        else return undefined; // data-dependent shape: the runtime allocates
      }
      specs.push({ name: output.name, type: output.type, dims });
    }
    return specs;
  }

  // ---------------------------------------------------------------- statistics

  getStats(): EngineStats {
    const devices: EngineStats['devices'] = {};
    const topsPerDevice: Record<string, number> = {};
    let tasksPerSec = 0;
    let inferencesPerSec = 0;
    let totalTops = 0;
    let peakTops = 0;
    let anyPeak = false;
    let simulated = false;
    const hostDepths = { preprocessing: this.stages.preprocess.queued, postprocessing: this.stages.postprocess.queued };
    for (const [id, s] of this.stats) {
      const device = this.devices.get(id);
      const snap = { ...s.snapshot(device ? (this.busy.get(device) ?? 0) : 0, this.queuedFor(id), hostDepths), thermal: this.thermal.get(id)!.decision };
      devices[id] = snap;
      if (snap.removed) continue;
      topsPerDevice[id] = snap.achievedTops;
      tasksPerSec += snap.throughputOpsPerSec;
      inferencesPerSec += snap.inferencesPerSec;
      totalTops += snap.achievedTops;
      simulated ||= snap.simulated;
      if (snap.peakTops !== null) {
        peakTops += snap.peakTops;
        anyPeak = true;
      }
    }
    const targetTops = this.options.targetTops ?? (anyPeak ? peakTops : null);
    const graphs: Record<string, GraphStats> = {};
    for (const g of this.graphs.values()) {
      graphs[g.id] = {
        graphId: g.id,
        name: g.name,
        precision: g.info.precision,
        opsPerInference: g.ops.total,
        opsCountComplete: g.ops.unknownOps.length === 0,
        queueDepth: g.queue.length,
        queueCapacity: g.queueCapacity,
        queuePolicy: g.queuePolicy,
        ...g.counts,
        latencyMs: g.latency.summary(),
        placement: Object.fromEntries([...g.loaded].map(([d, dg]) => [d, { executionProvider: dg.executionProvider, ...(dg.fallbackReason ? { fallbackReason: dg.fallbackReason } : {}) }])),
        loadErrors: Object.fromEntries(g.loadErrors),
        batching: {
          enabled: !!g.batching,
          ...(g.unbatchedReason ? { reason: g.unbatchedReason } : {}),
          ...(g.batching ? { cap: g.batching.controller.cap, delayMs: g.batching.controller.delayMs, maxBatchSize: g.batching.options.maxBatchSize, targetLatencyMs: g.batching.options.targetLatencyMs } : {}),
          runs: g.batches,
          avgBatchSize: g.batches ? g.batchedSamples / g.batches : 0,
        },
      };
    }
    const c = this.cache.stats();
    return {
      deviceCount: Object.values(devices).filter((d) => !d.removed).length,
      totalThroughputOpsPerSec: tasksPerSec,
      totalInferencesPerSec: inferencesPerSec,
      totalTops,
      topsPerDevice,
      targetTops,
      performanceRatio: targetTops ? totalTops / targetTops : null,
      simulated,
      devices,
      graphs,
      eventLoopDelayMs: this.eventLoop.summary(),
      memory: this.memoryStats(),
      graphCache: { ...c, hitRate: c.hits + c.misses ? c.hits / (c.hits + c.misses) : 0 },
      pipeline: this.pipelineStats(),
    };
  }

  /**
   * Stage statistics: preprocess and postprocess as they ran here; infer over every device
   * (slots = executors, queued = tasks in graph queues, active = runs on devices); transfers over
   * the devices that have a link (slots = links, queued/active from their bookings).
   */
  private pipelineStats(): PipelineStats {
    let executors = 0;
    let running = 0;
    let links = 0;
    let up = { queued: 0, active: 0 };
    let down = { queued: 0, active: 0 };
    for (const d of this.devices.values()) {
      executors += d.parallelism;
      running += this.busy.get(d) ?? 0;
      const l = d.linkState?.();
      if (!l) continue;
      links += l.links;
      up = { queued: up.queued + l.toDeviceQueued, active: up.active + l.toDeviceActive };
      down = { queued: down.queued + l.fromDeviceQueued, active: down.active + l.fromDeviceActive };
    }
    let waiting = 0;
    for (const g of this.graphs.values()) waiting += g.queue.length;
    const stages = {} as Record<StageName, StageStats>;
    for (const name of STAGES) {
      const stage = this.stages[name];
      if (name === 'infer') stages[name] = stage.snapshot({ concurrency: Math.max(1, executors), active: running, queued: waiting, capacity: null, present: executors > 0 });
      else if (name === 'toDevice' || name === 'fromDevice') {
        const now = name === 'toDevice' ? up : down;
        stages[name] = stage.snapshot({ concurrency: Math.max(1, links), active: now.active, queued: now.queued, capacity: null, present: links > 0 });
      } else stages[name] = stage.snapshot();
    }
    return { stages, bottleneck: findBottleneck(stages), concurrency: { ...this.concurrency } };
  }

  private memoryStats(): Record<string, MemoryPoolStats> {
    const out: Record<string, MemoryPoolStats> = { host: this.pool.getStats() };
    for (const d of this.devices.values()) {
      const m = d.memoryStats?.();
      if (m) out[d.id] = m;
    }
    return out;
  }

  /** Tasks waiting that this device could take. */
  private queuedFor(deviceId: string): number {
    let n = 0;
    for (const g of this.graphs.values()) if (g.loaded.has(deviceId)) n += g.queue.length;
    return n;
  }

  resetStats(): void {
    for (const s of this.stats.values()) s.reset();
    for (const g of this.graphs.values()) {
      g.latency.reset();
      for (const k of Object.keys(g.counts) as Array<keyof GraphEntry['counts']>) g.counts[k] = 0;
    }
    this.eventLoop.reset();
    for (const stage of Object.values(this.stages)) stage.reset();
    this.pool.resetStats();
    this.cache.resetStats();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.thermalTimer);
    for (const held of this.deviceRefs.values()) clearTimeout(held.idleTimer);
    this.deviceRefs.clear();
    for (const g of this.graphs.values()) {
      for (const task of g.queue.splice(0)) this.fail(task, new EngineClosedError('the engine closed before this task ran'));
    }
    await Promise.all([...this.devices.values()].map((d) => d.close()));
    for (const g of this.graphs.values()) {
      clearTimeout(g.idleTimer);
      clearTimeout(g.batchTimer);
      if (g.gatherImmediate) clearImmediate(g.gatherImmediate);
    }
    this.graphs.clear();
    this.cache.clear();
    this.pool.clear();
    this.eventLoop.stop();
  }
}

async function readModelFile(path: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ModelLoadError(`cannot read model file ${path}: ${why}; expected a readable .onnx file`);
  }
}
