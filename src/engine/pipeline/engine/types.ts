/** The engine's public types: options, handles, results, statistics and events. */
import type { Device, Precision, SessionSettings } from '../../devices/device';
import type { MemoryPoolStats } from '../../memory/memory-pool';
import type { ModelInfo } from '../../graph/model-info';
import type { WarningSubject } from './periodic';
import type { OpCount } from '../../graph/op-count';
import type { DeviceStatsSnapshot } from '../../telemetry/device-stats';
import type { LatencySummary } from '../../telemetry/stats';
import type { TensorData } from '../../tensor';
import type { BatchingOptions } from '../batcher';
import type { ThermalDecision, ThermalLimits, ThermalState } from '../thermal-policy';
import type { Bottleneck, ConcurrencyChoice, StageName, StageStats } from '../stages';

/** What a full queue does with a newcomer; `wait` holds it until there is room (bounded: see WAIT_LIMITS). */
export type QueuePolicy = 'reject' | 'drop-oldest' | 'drop-newest' | 'wait';

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
  state: GraphState;
  /** Why it failed, or which devices could not load it although it is ready elsewhere. */
  stateReason?: string;
  precision: Precision;
  opsPerInference: number;
  opsCountComplete: boolean;
  queueDepth: number;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
  /** Policy wait: submissions waiting for room in the full queue, and the input bytes they hold. */
  waitingForRoom: number;
  waitingBytes: number;
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

/**
 * Whether a graph can run: `ready` on at least one device; `loading` while no device has it yet
 * but one is loading it (or will, on demand); `failed` when no device has it and none can load it:
 * its tasks then fail at once, with the reason. A later loadGraph of the same model retries the
 * devices that failed, and removing a device forgets its failure.
 */
export type GraphState = 'loading' | 'ready' | 'failed';

export interface GraphHandle {
  readonly id: string;
  readonly name: string;
  readonly info: ModelInfo;
  readonly ops: OpCount;
  /** The state when this handle was made (getGraph makes a fresh one). */
  readonly state: GraphState;
  /** Why it failed, or which devices could not load it although it is ready elsewhere. */
  readonly stateReason?: string;
  /** The devices it was loaded on when this handle was made. */
  readonly loadedOn: readonly string[];
}

/** Emitted as 'thermal' when a device's thermal state changes. */
export interface ThermalEvent extends ThermalDecision {
  deviceId: string;
  temperatureC?: number;
  previous: ThermalState;
}

/**
 * What the engine emits, name to listener arguments (Node's typed EventEmitter): `engine.on('task', (e) => ...)`
 * gets a TaskEvent without a cast, and an unknown event name does not compile.
 */
export interface EngineEvents {
  /** Something a user should know: a graph that runs unbatched, a load that fell back or failed on a device, a timer or periodic check that threw, a device answer that could not be handed out. */
  warning: [warning: Error, about: WarningSubject];
  /** A completed task (only built when someone listens). */
  task: [event: TaskEvent];
  thermal: [event: ThermalEvent];
  /** A device was added or removed. */
  devices: [];
}
