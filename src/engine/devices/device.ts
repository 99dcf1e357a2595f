import type { TensorData, TensorType } from '../tensor';
import type { MemoryPoolStats } from '../memory/memory-pool';

export type DeviceKind = 'cpu' | 'sim-ncs2' | 'ncs2' | 'remote';
export type Precision = 'fp32' | 'fp16' | 'int8';

export interface DeviceInfo {
  name: string;
  description: string;
  /** True for simulated devices: every statistic derived from them says so. */
  simulated: boolean;
  [detail: string]: unknown;
}

export interface SessionSettings {
  /** Execution providers to try in order; 'cpu' is always the fallback. */
  executionProviders?: string[];
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * NaN or ±Infinity in a float input or output: 'error' (default) fails the task with an error
   * naming the tensor; 'allow' passes them on (a model whose outputs use -Infinity on purpose).
   */
  nonFinite?: 'error' | 'allow';
}

export interface LoadRequest {
  key: string;
  model: Uint8Array | string;
  session: SessionSettings;
}

export interface DeviceGraph {
  key: string;
  inputNames: string[];
  outputNames: string[];
  /** Execution provider that actually runs the graph (after any fallback). */
  executionProvider: string;
  /** Why a requested execution provider was not used, when it was not. */
  fallbackReason?: string;
  /** Precision the device computes this graph in, when it differs from the model's (a stick runs fp32 models in fp16). */
  precision?: Precision;
}

export interface NamedTensor extends TensorData {
  name: string;
}

export interface OutputSpec {
  name: string;
  type: TensorType;
  dims: number[];
}

export interface RunRequest {
  graphKey: string;
  inputs: NamedTensor[];
  /** Output shapes when known before the run, so the device can bind pooled memory for them. */
  outputs?: OutputSpec[];
}

export interface RunResult {
  outputs: Record<string, TensorData>;
  /** Time the runtime spent on this request on the device, in milliseconds. */
  inferMs: number;
  /** Time the request waited on the device before it started, in milliseconds. */
  deviceQueueMs: number;
  /** A device with a link (a stick's USB) reports each direction's transfer; a CPU device has none. */
  transfer?: { toDevice: TransferRecord; fromDevice: TransferRecord };
}

/** One direction of one request's transfer across a device's link. */
export interface TransferRecord {
  /** Bytes on the link (a stick moves float tensors as FP16). */
  bytes: number;
  /** Link time of the transfer itself. */
  ms: number;
  /** Time it waited for the link (behind other transfers, or, downloading, for its computation to end). */
  waitMs: number;
}

export interface DeviceTelemetry {
  temperatureC?: number;
  throttleLevel?: number;
  simulated: boolean;
}

/**
 * A device runs compiled graphs with up to `maxInFlight` requests at once. The scheduler owns
 * queueing; a device only executes what it is given and reports how long it took.
 */
export interface Device {
  readonly id: string;
  readonly kind: DeviceKind;
  readonly info: DeviceInfo;
  readonly maxInFlight: number;
  /** Requests the device works on at the same time (a CPU device's workers, a stick's executors). */
  readonly parallelism: number;
  /**
   * The device may slow itself down without saying so (a stick's firmware throttling), so a run time
   * rising above its best at the same load counts as throttling. Not for a CPU device: its run time
   * rises with any other load on the host, which is contention, and its temperature is read directly.
   */
  readonly throttlesSilently?: boolean;
  /**
   * False while the device cannot take work (a remote endpoint marked down until a probe finds it
   * ready). The scheduler passes over it while another device can run the task, so tasks do not
   * spend their retries on it; when none can, the run is tried and fails with the device's reason.
   */
  available?(): boolean;
  load(request: LoadRequest): Promise<DeviceGraph>;
  unload(key: string): Promise<void>;
  run(request: RunRequest): Promise<RunResult>;
  telemetry(): DeviceTelemetry;
  /** Measured (or, for a stick, published) peak ops/s for a precision; undefined when not measured. */
  peakOpsPerSec(precision: Precision): number | undefined;
  /** The device's pooled host memory, when it has one. */
  memoryStats?(): MemoryPoolStats;
  /** A device with a link: its links (1 per direction for USB 3) and requests waiting for each direction now. */
  linkState?(): { links: number; toDeviceQueued: number; fromDeviceQueued: number; toDeviceActive: number; fromDeviceActive: number; bytesPerSec: number };
  close(): Promise<void>;
}
