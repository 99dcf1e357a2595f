import * as os from 'os';
import { InferenceEngine, type EngineOptions, type EngineStats, type GraphHandle, type GraphOptions, type QueuePolicy, type TaskResult, type TaskTimings } from './engine';
import { CpuDevice, type CpuDeviceOptions } from '../devices/cpu/cpu-device';
import type { Device } from '../devices/device';
import type { OptimizationConfig } from '../graph/optimizer';
import type { TensorInfo } from '../graph/model-info';
import { CpuAffinityOptimizer } from '../host/affinity';
import { getMemoryPoolManager, type MemoryPool } from '../memory/memory-pool';
import { InputError } from '../errors';
import { ConfigError } from '../io/errors';
import { bytesPerElement, type Feeds, type TensorData } from '../tensor';
import { markPeakStale, PEAK_PRECISIONS } from '../telemetry/peak';
import type { BatchingOptions } from './batcher';

/**
 * The pipeline API the original Python design promised (ncs2_edge_pipeline), on the engine:
 * graphs are registered under the caller's ids, tasks are submitted with a callback or awaited,
 * and statistics are the engine's measured ones.
 */
export interface EdgePipelineOptions {
  /** CPU devices to split this host into (each gets cores / deviceCount workers). */
  deviceCount?: number;
  /** Requests in flight per device (the cap; the engine keeps fewer for slow models). */
  maxParallelGraphsPerDevice?: number;
  /** Use these devices instead of splitting the CPU. */
  devices?: Device[];
  targetTops?: number;
  queueCapacity?: number;
  /**
   * What a full graph queue does with a newcomer. Default `wait`: the submission waits for room
   * (bounded, see WAIT_LIMITS), so a script's submit loop is never refused for going fast.
   */
  queuePolicy?: QueuePolicy;
  /** Byte cap of each device's pool (the memory pool manager's pools; default 512). */
  poolSizeMb?: number;
  /** Graphs each pool's graph cache keeps, and compiled graphs per device the engine keeps loaded (default 10). */
  maxCachedGraphs?: number;
  /** The design's configuration: each engine key drives its engine setting or is refused by name (see docs/engine-api.md). */
  config?: OptimizationConfig;
}

export interface FinishedTask {
  id: number;
  graphId: string;
  deviceId?: string;
  outputs?: TaskResult['outputs'];
  error?: Error;
  timings?: TaskTimings;
  batchSize?: number;
  retries?: number;
}

/** The engine's statistics with the design's `topsPerDevice` as a number (the mean over devices). */
export type EdgePipelineStats = Omit<EngineStats, 'topsPerDevice'> & {
  /** totalTops / deviceCount, so the design's check `stats.topsPerDevice < 5.0` compares a number. */
  topsPerDevice: number;
  /** Measured TOPS of each device. */
  topsByDevice: Record<string, number>;
};

/** One tensor for a single-input model, or named feeds. */
export type TaskInput = Feeds | TensorData;

/** What the pipeline makes of an OptimizationConfig: engine options, device options, load options. */
interface ConfigPlan {
  batching?: BatchingOptions | boolean;
  maxInFlight?: number;
  maxCachedGraphs?: number;
  thermal?: EngineOptions['thermal'];
  cpuOptions: Array<Partial<CpuDeviceOptions>>;
}

/**
 * Maps the design's OptimizationConfig onto the engine. A key the engine cannot honour is refused
 * by name with the reason; useInt8/useFp16 and the optimizer settings belong to GraphOptimizer.
 */
function planConfig(config: OptimizationConfig, options: EdgePipelineOptions, deviceCount: number): ConfigPlan {
  const refuse = (key: keyof OptimizationConfig, why: string) => new ConfigError(`OptimizationConfig.${key}: ${why}`);
  if (config.enableZeroCopy === false) throw refuse('enableZeroCopy', 'false is not supported: the engine always moves pooled input buffers to its workers without copying (allocateTensor gives such buffers); plain arrays are copied once either way');
  if (config.useMemoryPooling === false) throw refuse('useMemoryPooling', "false is not supported: every device packs its transfers in its memory pool; set poolSizeMb to bound what the pool keeps");
  if (config.enableThermalThrottling === false) throw refuse('enableThermalThrottling', 'false is not supported: the engine always lowers a hot device\'s share and stops at the critical temperature to protect the hardware; raise targetTemperatureC instead');
  const plan: ConfigPlan = { cpuOptions: Array.from({ length: deviceCount }, () => ({})) };
  if (config.optimalBatchSize !== undefined) {
    if (!(Number.isInteger(config.optimalBatchSize) && config.optimalBatchSize >= 1)) throw refuse('optimalBatchSize', `expected an integer >= 1, got ${config.optimalBatchSize}`);
    if (!config.enableBatching) throw refuse('optimalBatchSize', `${config.optimalBatchSize} needs enableBatching: true (batching is what forms batches)`);
  }
  if (config.enableBatching) plan.batching = config.optimalBatchSize ? { maxBatchSize: config.optimalBatchSize } : true;
  if (config.pipelineDepth !== undefined) {
    if (!(Number.isInteger(config.pipelineDepth) && config.pipelineDepth >= 1)) throw refuse('pipelineDepth', `expected an integer >= 1, got ${config.pipelineDepth}`);
    if (options.maxParallelGraphsPerDevice !== undefined && options.maxParallelGraphsPerDevice !== config.pipelineDepth) {
      throw refuse('pipelineDepth', `${config.pipelineDepth} contradicts maxParallelGraphsPerDevice ${options.maxParallelGraphsPerDevice} (both are the requests in flight per device); set one`);
    }
    plan.maxInFlight = config.pipelineDepth;
  }
  if (config.maxParallelGraphs !== undefined) {
    if (!(Number.isInteger(config.maxParallelGraphs) && config.maxParallelGraphs >= 1)) throw refuse('maxParallelGraphs', `expected an integer >= 1, got ${config.maxParallelGraphs}`);
    if (options.maxCachedGraphs !== undefined && options.maxCachedGraphs !== config.maxParallelGraphs) {
      throw refuse('maxParallelGraphs', `${config.maxParallelGraphs} contradicts maxCachedGraphs ${options.maxCachedGraphs} (both bound the graphs kept loaded per device); set one`);
    }
    plan.maxCachedGraphs = config.maxParallelGraphs;
  }
  if (config.targetTemperatureC !== undefined) {
    if (!(config.targetTemperatureC > 0)) throw refuse('targetTemperatureC', `expected degrees C above 0, got ${config.targetTemperatureC}`);
    plan.thermal = { targetC: config.targetTemperatureC };
  }
  if (config.cpuAffinityCores !== undefined) {
    if (options.devices) throw refuse('cpuAffinityCores', 'applies to the CPU devices the pipeline creates; devices passed in carry their own affinity option');
    const cores = config.cpuAffinityCores;
    if (cores.length < deviceCount) throw refuse('cpuAffinityCores', `${cores.length} core(s) for ${deviceCount} devices; expected at least one per device`);
    // each device pins its runtime threads to its own share of the cores
    const per = Math.floor(cores.length / deviceCount);
    plan.cpuOptions = plan.cpuOptions.map((_, i) => new CpuAffinityOptimizer().setThreadAffinity(cores.slice(i * per, (i + 1) * per)).cpuDeviceOptions);
  }
  return plan;
}

/** Bytes of one sample of these tensors, as a device packs them (symbolic dims taken as 1). */
function sampleBytes(tensors: TensorInfo[]): number {
  let bytes = 0;
  for (const t of tensors) {
    if (t.type === 'string') return 0;
    const elements = t.dims.reduce<number>((n, d) => n * (typeof d === 'number' && d > 0 ? d : 1), 1);
    bytes += (elements * bytesPerElement(t.type) + 63) & ~63;
  }
  return bytes;
}

/** The pool a device packs its transfers in, when it has one (CPU devices do). */
function poolOfDevice(device: Device): MemoryPool | undefined {
  return device instanceof CpuDevice ? device.pool : undefined;
}

export class EdgePipeline {
  private engineInstance?: InferenceEngine;
  private readonly graphs = new Map<string, Promise<GraphHandle>>();
  private nextTaskId = 1;
  private readonly plan: ConfigPlan;
  /** The manager's pools this pipeline's CPU devices use (empty with devices passed in that have none). */
  private pools: MemoryPool[] = [];

  constructor(private readonly options: EdgePipelineOptions = {}) {
    this.plan = planConfig(options.config ?? {}, options, options.devices?.length ?? this.deviceCount());
  }

  private deviceCount(): number {
    return Math.max(1, this.options.deviceCount ?? 1);
  }

  /** Starts the devices (worker threads). Idempotent. */
  start(): this {
    if (this.engineInstance) return this;
    const devices = this.options.devices ?? this.cpuSplit();
    this.pools = devices.flatMap((d) => poolOfDevice(d) ?? []);
    const perDevice = this.plan.maxCachedGraphs ?? this.options.maxCachedGraphs;
    this.engineInstance = new InferenceEngine({
      devices,
      targetTops: this.options.targetTops,
      queueCapacity: this.options.queueCapacity,
      queuePolicy: this.options.queuePolicy ?? 'wait',
      // the engine's cache holds one entry per model and device
      maxCachedGraphs: perDevice !== undefined ? perDevice * devices.length : undefined,
      poolSizeMb: this.options.poolSizeMb,
      thermal: this.plan.thermal,
    });
    return this;
  }

  /** Devices over the memory pool manager's pools 0..n-1, so getMemoryPoolManager().getPool(i) shows their use. */
  private cpuSplit(): Device[] {
    const count = this.deviceCount();
    const workers = Math.max(1, Math.floor(os.availableParallelism() / count));
    const manager = getMemoryPoolManager({ deviceCount: count, poolSizeMb: this.options.poolSizeMb, maxCachedGraphs: this.options.maxCachedGraphs });
    return Array.from({ length: count }, (_, i) => {
      const pool = manager.getPool(i);
      pool.configure({ poolSizeMb: this.options.poolSizeMb, maxCachedGraphs: this.plan.maxCachedGraphs ?? this.options.maxCachedGraphs });
      const maxInFlight = this.plan.maxInFlight ?? this.options.maxParallelGraphsPerDevice;
      return new CpuDevice({ id: `cpu-${i}`, workers, threadsPerWorker: 1, maxInFlight, pool, ...this.plan.cpuOptions[i] });
    });
  }

  get engine(): InferenceEngine {
    if (!this.engineInstance) throw new InputError('the pipeline is not started; call start() first');
    return this.engineInstance;
  }

  /** Stops the devices; stopping the process-wide pipeline lets getEdgePipeline() make a new one. */
  async stop(): Promise<void> {
    if (shared === this) shared = undefined;
    const e = this.engineInstance;
    this.engineInstance = undefined;
    this.graphs.clear();
    await e?.close();
  }

  /**
   * Registers a model (path or bytes) under `graphId`, records it in each device pool's graph
   * cache, and pre-allocates pool buffers for one request per executor.
   */
  async loadGraph(graphId: string, model: string | Uint8Array, options: GraphOptions = {}): Promise<GraphHandle> {
    const loading = this.engine.loadGraph(model, { name: graphId, batching: this.plan.batching, ...options });
    this.graphs.set(graphId, loading);
    loading.catch(() => this.graphs.get(graphId) === loading && this.graphs.delete(graphId));
    const handle = await loading;
    const inBytes = sampleBytes(handle.info.inputs);
    const outBytes = sampleBytes(handle.info.outputs);
    for (const device of this.engine.listDevices()) {
      const pool = poolOfDevice(device);
      if (!pool) continue;
      if (!pool.getCachedGraph(graphId)) pool.cacheGraph(graphId, model, handle.info.inputs, handle.info.outputs);
      if (inBytes) pool.reserve(inBytes, device.parallelism);
      if (outBytes) pool.reserve(outBytes, device.parallelism);
    }
    return handle;
  }

  /** The graph under `graphId`: loaded here, or cached with pool.cacheGraph in one of this pipeline's pools. */
  private graph(graphId: string): Promise<GraphHandle> {
    const known = this.graphs.get(graphId);
    if (known) return known;
    for (const pool of this.pools) {
      const cached = pool.getCachedGraph(graphId);
      if (!cached) continue;
      const model = cached.graphData;
      if (typeof model !== 'string' && !(model instanceof Uint8Array)) {
        return Promise.reject(new InputError(`graph '${graphId}' was cached in pool ${pool.deviceId} with graphData of type ${typeof model}; expected the model's path or its bytes (Uint8Array)`));
      }
      return this.loadGraph(graphId, model);
    }
    const pools = this.pools.map((p) => p.deviceId).join(', ') || '(none)';
    return Promise.reject(new InputError(`graph '${graphId}' is not loaded; loaded: ${[...this.graphs.keys()].join(', ') || '(none)'}; not cached in pools ${pools} either`));
  }

  private feeds(graph: GraphHandle, input: TaskInput): Feeds {
    if ('data' in input && 'dims' in input && ArrayBuffer.isView((input as TensorData).data)) {
      if (graph.info.inputs.length !== 1) {
        throw new InputError(`graph ${graph.name} has ${graph.info.inputs.length} inputs (${graph.info.inputs.map((i) => i.name).join(', ')}); pass named feeds`);
      }
      return { [graph.info.inputs[0].name]: input as TensorData };
    }
    return input as Feeds;
  }

  /** Awaitable form: resolves with the finished task's outputs and timings. */
  async run(graphId: string, input: TaskInput, deviceId?: string, deadlineMs?: number): Promise<TaskResult> {
    const graph = await this.graph(graphId);
    return this.engine.submit(graph, this.feeds(graph, input), { deviceId, deadlineMs });
  }

  /** Callback form: returns the task id at once; the callback gets the finished task (outputs or error). */
  submitTask(graphId: string, input: TaskInput, callback?: (task: FinishedTask) => void, deviceId?: string): number {
    const id = this.nextTaskId++;
    this.run(graphId, input, deviceId).then(
      (r) => callback?.({ id, graphId, deviceId: r.deviceId, outputs: r.outputs, timings: r.timings, batchSize: r.batchSize, retries: r.retries }),
      (error: Error) => callback?.({ id, graphId, error }),
    );
    return id;
  }

  /**
   * The engine's statistics. A device that did more than its peak shows its peak is no ceiling:
   * the figure is dropped (markPeakStale) so utilization reads null, never over 100 %, until the
   * peak is measured again.
   */
  getStats(): EdgePipelineStats {
    let stats = this.engine.getStats();
    const exceeded = Object.values(stats.devices).filter((d) => d.utilization !== null && d.utilization > 1);
    for (const d of exceeded) {
      const device = this.engine.getDevice(d.deviceId);
      const precision = device && PEAK_PRECISIONS.find((p) => device.peakOpsPerSec(p)! / 1e12 === d.peakTops);
      if (!device || !precision) continue;
      markPeakStale(device, precision).catch((err: Error) => this.engine.emit('warning', err, { device: d.deviceId }));
    }
    if (exceeded.length) {
      stats = this.engine.getStats();
      // a figure the device reports itself (not measured here) cannot be dropped: its utilization is withheld
      for (const d of Object.values(stats.devices)) if (d.utilization !== null && d.utilization > 1) d.utilization = null;
    }
    return { ...stats, topsPerDevice: stats.deviceCount ? stats.totalTops / stats.deviceCount : 0, topsByDevice: stats.topsPerDevice };
  }
}

/** One device's pipeline (the original DevicePipeline): a CPU device of its own, with an optional pool. */
export class DevicePipeline extends EdgePipeline {
  constructor(options: { deviceId: string | number; memoryPool?: MemoryPool; maxParallelGraphs?: number; workers?: number }) {
    const id = typeof options.deviceId === 'number' ? `cpu-${options.deviceId}` : options.deviceId;
    super({ devices: [new CpuDevice({ id, pool: options.memoryPool, maxInFlight: options.maxParallelGraphs, workers: options.workers })] });
  }
}

let shared: EdgePipeline | undefined;

/** The process-wide pipeline, started. Options apply when it is first created. */
export function getEdgePipeline(options: { deviceCount?: number; maxParallelGraphs?: number } = {}): EdgePipeline {
  if (!shared) shared = new EdgePipeline({ deviceCount: options.deviceCount, maxParallelGraphsPerDevice: options.maxParallelGraphs }).start();
  return shared;
}
