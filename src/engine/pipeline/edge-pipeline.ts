import * as os from 'os';
import { InferenceEngine, type EngineStats, type GraphHandle, type GraphOptions, type TaskResult, type TaskTimings } from './engine';
import { CpuDevice } from '../devices/cpu/cpu-device';
import type { Device } from '../devices/device';
import type { MemoryPool } from '../memory/memory-pool';
import { InputError } from '../errors';
import type { Feeds, TensorData } from '../tensor';

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

/** One tensor for a single-input model, or named feeds. */
export type TaskInput = Feeds | TensorData;

export class EdgePipeline {
  private engineInstance?: InferenceEngine;
  private readonly graphs = new Map<string, GraphHandle>();
  private nextTaskId = 1;

  constructor(private readonly options: EdgePipelineOptions = {}) {}

  /** Starts the devices (worker threads). Idempotent. */
  start(): this {
    if (this.engineInstance) return this;
    this.engineInstance = new InferenceEngine({ devices: this.options.devices ?? this.cpuSplit(), targetTops: this.options.targetTops, queueCapacity: this.options.queueCapacity });
    return this;
  }

  private cpuSplit(): Device[] {
    const count = Math.max(1, this.options.deviceCount ?? 1);
    const workers = Math.max(1, Math.floor(os.availableParallelism() / count));
    return Array.from({ length: count }, (_, i) => new CpuDevice({ id: `cpu-${i}`, workers, threadsPerWorker: 1, maxInFlight: this.options.maxParallelGraphsPerDevice }));
  }

  get engine(): InferenceEngine {
    if (!this.engineInstance) throw new InputError('the pipeline is not started; call start() first');
    return this.engineInstance;
  }

  async stop(): Promise<void> {
    const e = this.engineInstance;
    this.engineInstance = undefined;
    this.graphs.clear();
    await e?.close();
  }

  /** Registers a model (path or bytes) under `graphId`. */
  async loadGraph(graphId: string, model: string | Uint8Array, options: GraphOptions = {}): Promise<GraphHandle> {
    const handle = await this.engine.loadGraph(model, { name: graphId, ...options });
    this.graphs.set(graphId, handle);
    return handle;
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
  run(graphId: string, input: TaskInput, deviceId?: string): Promise<TaskResult> {
    const graph = this.graphs.get(graphId);
    if (!graph) return Promise.reject(new InputError(`graph '${graphId}' is not loaded; loaded: ${[...this.graphs.keys()].join(', ') || '(none)'}`));
    try {
      return this.engine.submit(graph, this.feeds(graph, input), { deviceId });
    } catch (err) {
      return Promise.reject(err);
    }
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

  getStats(): EngineStats {
    return this.engine.getStats();
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
