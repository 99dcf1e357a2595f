import type { Device, DeviceGraph, DeviceInfo, DeviceTelemetry, LoadRequest, Precision, RunRequest, RunResult } from '../../src/engine/devices/device';
import { DeviceError } from '../../src/engine/errors';
import type { TensorData } from '../../src/engine/tensor';

export interface FakeDeviceOptions {
  id: string;
  serviceMs?: number;
  parallelism?: number;
  maxInFlight?: number;
  /** Decides per run whether it fails (called with the run's ordinal). */
  failWhen?: (ordinal: number) => boolean;
  failLoad?: boolean;
  /** Declares that the device throttles without telling (as a stick does). */
  throttlesSilently?: boolean;
}

/**
 * A device for scheduler tests: runs take `serviceMs` of timer time, the output echoes the sum of
 * the first input so tests can tell which task a result belongs to, and failures are injected.
 */
export class FakeDevice implements Device {
  readonly kind = 'cpu' as const;
  readonly info: DeviceInfo;
  readonly maxInFlight: number;
  readonly parallelism: number;
  runs = 0;
  running = 0;
  batchSizes: number[] = [];
  /** What telemetry() reports; tests heat and cool the device through it. */
  temperatureC?: number;
  maxRunning = 0;
  closed = false;
  /** What available() answers; tests take the device down and bring it back through it. */
  up = true;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; reject: (e: Error) => void }>();

  readonly throttlesSilently: boolean;

  constructor(private readonly options: FakeDeviceOptions) {
    this.throttlesSilently = options.throttlesSilently ?? false;
    this.info = { name: `fake ${options.id}`, description: 'test device', simulated: false };
    this.parallelism = options.parallelism ?? 1;
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  /** Changes the run time from now on (a device slowing down). */
  setServiceMs(ms: number): void {
    this.options.serviceMs = ms;
  }

  get id(): string {
    return this.options.id;
  }

  available(): boolean {
    return this.up;
  }

  async load(request: LoadRequest): Promise<DeviceGraph> {
    if (this.options.failLoad) throw new Error(`fake load failure on ${this.id}`);
    return { key: request.key, inputNames: ['input'], outputNames: ['output'], executionProvider: 'fake' };
  }

  async unload(): Promise<void> {}

  run(request: RunRequest): Promise<RunResult> {
    const ordinal = this.runs++;
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise((resolve, reject) => {
      const entry = {
        reject: (e: Error) => {
          this.running--;
          reject(e);
        },
        timer: setTimeout(() => {
          this.timers.delete(entry);
          this.running--;
          if (this.options.failWhen?.(ordinal)) {
            reject(new DeviceError(`${this.id}: injected failure on run ${ordinal}`, this.id));
            return;
          }
          // one output row per input row: the row's sum, so tests can match results to tasks
          const input = request.inputs[0];
          const rows = input.dims[0];
          const width = input.data.length / rows;
          const sums = new Float32Array(rows);
          for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) sums[r] += (input.data as Float32Array)[r * width + c];
          this.batchSizes.push(rows);
          const output: TensorData = { type: 'float32', dims: [rows, 1], data: sums };
          resolve({ outputs: { output }, inferMs: this.options.serviceMs ?? 1, deviceQueueMs: 0 });
        }, this.options.serviceMs ?? 1),
      };
      this.timers.add(entry);
    });
  }

  telemetry(): DeviceTelemetry {
    return { simulated: false, temperatureC: this.temperatureC };
  }

  peakOpsPerSec(_precision: Precision): number | undefined {
    return undefined;
  }

  /** Like an unplugged device: everything running fails. */
  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.timers) {
      clearTimeout(entry.timer);
      entry.reject(new DeviceError(`${this.id} was unplugged`, this.id));
    }
    this.timers.clear();
  }
}
