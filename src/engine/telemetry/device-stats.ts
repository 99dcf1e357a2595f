import type { Device, Precision, RunResult } from '../devices/device';
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
  /**
   * Requests waiting per stage. preprocessing and postprocessing are host stages shared by every
   * device (the same figures on each); inference counts tasks this device could take; the
   * transfer stages are this device's own link (0 for a CPU device, which has none).
   */
  queueDepths: { preprocessing: number; inference: number; postprocessing: number; toDevice: number; fromDevice: number };
  /** Bytes per direction: what crossed the device's link, and the tensors as the host handed them over. */
  transfer: TransferStats;
  temperatureC: number | null;
}

export interface TransferStats {
  /** 'usb' for a stick; 'none' for a CPU device (inputs move between threads, no link). */
  link: 'usb' | 'none';
  /** Runs counted (a batched run carries several samples). */
  runs: number;
  samples: number;
  /** Bytes on the link (a stick moves float tensors as FP16); for a device without a link, the tensors' bytes. */
  bytesIn: number;
  bytesOut: number;
  bytesInPerSample: number;
  bytesOutPerSample: number;
  /** Bytes per second over the sliding window, each direction. */
  bytesInPerSec: number;
  bytesOutPerSec: number;
  /** The tensors' own bytes (float32 = 4 per value) as the host handed them over. */
  tensorBytesIn: number;
  tensorBytesOut: number;
  /** The link's payload rate (bytes/s) and the busier direction's share of it; null without a link. */
  linkBytesPerSec: number | null;
  bandwidthUtilization: number | null;
  /** Link time per run, each direction (zero counts for a device without a link). */
  toDeviceMs: LatencySummary;
  fromDeviceMs: LatencySummary;
}

export interface HostStageDepths {
  preprocessing: number;
  postprocessing: number;
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
  private xfer = { runs: 0, samples: 0, bytesIn: 0, bytesOut: 0, tensorBytesIn: 0, tensorBytesOut: 0 };
  private bytesInRate = new RateWindow();
  private bytesOutRate = new RateWindow();
  private readonly toDevice = new LatencyHistogram();
  private readonly fromDevice = new LatencyHistogram();

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

  /**
   * Bytes one run moved: the link's own figures when the device has a link, else the tensors' bytes
   * (`tensorBytesIn/Out`, counted by the engine before the inputs moved to the device).
   */
  onTransfer(result: Pick<RunResult, 'transfer'>, samples: number, tensorBytesIn: number, tensorBytesOut: number): void {
    const t = result.transfer;
    const bytesIn = t ? t.toDevice.bytes : tensorBytesIn;
    const bytesOut = t ? t.fromDevice.bytes : tensorBytesOut;
    const x = this.xfer;
    x.runs++;
    x.samples += samples;
    x.bytesIn += bytesIn;
    x.bytesOut += bytesOut;
    x.tensorBytesIn += tensorBytesIn;
    x.tensorBytesOut += tensorBytesOut;
    const at = Date.now();
    this.bytesInRate.add(bytesIn, at);
    this.bytesOutRate.add(bytesOut, at);
    if (t) {
      this.toDevice.record(t.toDevice.ms);
      this.fromDevice.record(t.fromDevice.ms);
    }
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
    this.xfer = { runs: 0, samples: 0, bytesIn: 0, bytesOut: 0, tensorBytesIn: 0, tensorBytesOut: 0 };
    this.bytesInRate = new RateWindow();
    this.bytesOutRate = new RateWindow();
    this.toDevice.reset();
    this.fromDevice.reset();
  }

  private transferStats(link: ReturnType<NonNullable<Device['linkState']>> | undefined): TransferStats {
    const x = this.xfer;
    const bytesInPerSec = this.bytesInRate.perSecond();
    const bytesOutPerSec = this.bytesOutRate.perSecond();
    const linkBytesPerSec = link ? link.bytesPerSec * link.links : null;
    return {
      link: this.device.linkState ? 'usb' : 'none',
      runs: x.runs,
      samples: x.samples,
      bytesIn: x.bytesIn,
      bytesOut: x.bytesOut,
      bytesInPerSample: x.samples ? x.bytesIn / x.samples : 0,
      bytesOutPerSample: x.samples ? x.bytesOut / x.samples : 0,
      bytesInPerSec,
      bytesOutPerSec,
      tensorBytesIn: x.tensorBytesIn,
      tensorBytesOut: x.tensorBytesOut,
      linkBytesPerSec,
      bandwidthUtilization: linkBytesPerSec ? Math.max(bytesInPerSec, bytesOutPerSec) / linkBytesPerSec : null,
      toDeviceMs: this.toDevice.summary(),
      fromDeviceMs: this.fromDevice.summary(),
    };
  }

  snapshot(inFlight: number, queued: number, host: HostStageDepths = { preprocessing: 0, postprocessing: 0 }): DeviceStatsSnapshot {
    const latency = this.latency.summary();
    const opsPerSec = this.ops.perSecond();
    const peak = this.device.peakOpsPerSec(this.lastPrecision);
    const finished = this.completed + this.failed;
    const telemetry = this.removed ? undefined : this.device.telemetry();
    const link = this.removed ? undefined : this.device.linkState?.();
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
      queueDepths: { preprocessing: host.preprocessing, inference: queued, postprocessing: host.postprocessing, toDevice: link?.toDeviceQueued ?? 0, fromDevice: link?.fromDeviceQueued ?? 0 },
      transfer: this.transferStats(link),
      temperatureC: telemetry?.temperatureC ?? null,
    };
  }
}
