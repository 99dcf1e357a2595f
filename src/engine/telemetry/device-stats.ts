import type { Device, Precision } from '../devices/device';
import { LatencyHistogram, RateWindow, type LatencySummary } from './stats';

export interface DeviceStatsSnapshot {
  deviceId: string;
  kind: string;
  name: string;
  simulated: boolean;
  removed: boolean;
  totalTasks: number;
  completedTasks: number;
  failedTasks: number;
  retriedTasks: number;
  successRate: number;
  avgLatencyMs: number;
  minLatencyMs: number;
  maxLatencyMs: number;
  latencyMs: LatencySummary;
  /** The runtime's time per run (one run may carry a batch of tasks). */
  inferMs: LatencySummary;
  /** Completed tasks per second over the sliding window. */
  throughputOpsPerSec: number;
  /** Completed samples per second (batch-aware). */
  inferencesPerSec: number;
  achievedTops: number;
  /** Measured peak in TOPS for the precision this device mostly ran (null until measured). */
  peakTops: number | null;
  /** achieved / peak for the work done, weighting each task by its precision's peak (null without a peak). */
  utilization: number | null;
  /** Share of the window the device's executors were busy running (inferMs / parallelism). */
  occupancy: number;
  inFlight: number;
  maxInFlight: number;
  queueDepths: { preprocessing: number; inference: number; postprocessing: number };
  temperatureC: number | null;
}

/** Everything measured about one device. Numbers come only from completed events and measured peaks. */
export class DeviceStats {
  private submitted = 0;
  private completed = 0;
  private failed = 0;
  private retried = 0;
  private removed = false;
  private readonly latency = new LatencyHistogram();
  private readonly infer = new LatencyHistogram();
  private tasks = new RateWindow();
  private samples = new RateWindow();
  private ops = new RateWindow();
  /** Work in units of "seconds of the device's peak", so mixed precisions add up correctly. */
  private peakSeconds = new RateWindow();
  private busyMs = new RateWindow();
  private lastPrecision: Precision = 'fp32';

  constructor(private readonly device: Device) {}

  onDispatch(tasks: number): void {
    this.submitted += tasks;
  }

  /** One run on the device (a batch of one or more tasks). */
  onRun(inferMs: number, samples: number, opsPerSample: number, precision: Precision): void {
    this.infer.record(inferMs);
    const at = Date.now();
    this.samples.add(samples, at);
    const ops = opsPerSample * samples;
    this.ops.add(ops, at);
    this.busyMs.add(inferMs, at);
    const peak = this.device.peakOpsPerSec(precision);
    if (peak) this.peakSeconds.add(ops / peak, at);
    this.lastPrecision = precision;
  }

  onTaskDone(totalMs: number): void {
    this.completed++;
    this.latency.record(totalMs);
    this.tasks.add(1);
  }

  onFail(tasks = 1): void {
    this.failed += tasks;
  }

  onRetry(tasks = 1): void {
    this.retried += tasks;
  }

  markRemoved(): void {
    this.removed = true;
  }

  reset(): void {
    this.submitted = this.completed = this.failed = this.retried = 0;
    this.latency.reset();
    this.infer.reset();
    this.tasks = new RateWindow();
    this.samples = new RateWindow();
    this.ops = new RateWindow();
    this.peakSeconds = new RateWindow();
    this.busyMs = new RateWindow();
  }

  snapshot(inFlight: number, queued: number): DeviceStatsSnapshot {
    const latency = this.latency.summary();
    const opsPerSec = this.ops.perSecond();
    const peak = this.device.peakOpsPerSec(this.lastPrecision);
    const finished = this.completed + this.failed;
    const telemetry = this.removed ? undefined : this.device.telemetry();
    return {
      deviceId: this.device.id,
      kind: this.device.kind,
      name: this.device.info.name,
      simulated: this.device.info.simulated,
      removed: this.removed,
      totalTasks: this.submitted,
      completedTasks: this.completed,
      failedTasks: this.failed,
      retriedTasks: this.retried,
      successRate: finished ? this.completed / finished : 1,
      avgLatencyMs: latency.meanMs,
      minLatencyMs: latency.minMs,
      maxLatencyMs: latency.maxMs,
      latencyMs: latency,
      inferMs: this.infer.summary(),
      throughputOpsPerSec: this.tasks.perSecond(),
      inferencesPerSec: this.samples.perSecond(),
      achievedTops: opsPerSec / 1e12,
      peakTops: peak ? peak / 1e12 : null,
      utilization: peak ? this.peakSeconds.perSecond() : null,
      occupancy: Math.min(1, this.busyMs.perSecond() / 1000 / this.device.parallelism),
      inFlight,
      maxInFlight: this.device.maxInFlight,
      // The engine has one queue stage today (inference); pre/postprocessing run in the caller.
      queueDepths: { preprocessing: 0, inference: queued, postprocessing: 0 },
      temperatureC: telemetry?.temperatureC ?? null,
    };
  }
}
