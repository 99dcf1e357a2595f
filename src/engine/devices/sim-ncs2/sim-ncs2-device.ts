/**
 * A simulated Intel NCS2 stick. Outputs are real: the network runs on the host CPU through
 * onnxruntime (a CpuDevice shared by all simulated sticks) with FP16-rounded weights, inputs and
 * outputs (fp16.ts). Completions are paced to the timing model of a Myriad X (stick-model.ts,
 * calibrated in calibration.ts): a result is delivered when both the host has computed it and the
 * simulated stick would have returned it. When the host is the slower of the two, the device
 * counts it ('hostLate'), so benchmarks can say the host, not the sticks, is the bottleneck.
 *
 * The stick registers in the stick registry as a simulated USB device; simulateUnplug() detaches
 * it through the registry's usb 'disconnect' path, exactly like a real stick pulled out.
 */
import { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import type { Device, DeviceGraph, DeviceInfo, DeviceTelemetry, LoadRequest, Precision, RunRequest, RunResult } from '../device';
import { DeviceError, ModelLoadError } from '../../errors';
import { ModelFormatError, readModelInfo, type ModelInfo } from '../../graph/model-info';
import { elementCount } from '../../tensor';
import { releasePooled } from '../../memory/memory-pool';
import { StickModel, type Booking } from './stick-model';
import { UsbLink } from './lanes';
import type { ThermalParams } from './thermal-model';
import { timingParams, wireBytesPerElement, type Ncs2TimingParams, type UsbGeneration } from './timing';
import { prepareModelOffThread, type ModelTimingProfile } from './analyze';
import { sharedComputePool, type SimComputePool } from './compute-pool';
import { Pacer } from './pacer';
import { getStickRegistry, type StickRecord, type StickRegistry, type UsbDeviceLike } from '../usb/registry';
import { MOVIDIUS_VENDOR_ID, MYRIAD_X_BOOTED } from '../usb/ids';

export interface SimNcs2Options {
  id?: string;
  /** USB generation of the stick's port (default 3). */
  usb?: UsbGeneration;
  /** A USB 2 bus shared with other sticks (default: one process-wide simulated USB 2 bus). */
  bus?: UsbLink;
  /** Simulated port number, for its USB path 'sim-<port>' (default: next free). */
  port?: number;
  /** Requests the engine may hand over at once (default 8: the plugin's 4 plus cover for timer granularity). */
  maxInFlight?: number;
  timing?: Partial<Ncs2TimingParams>;
  thermal?: Partial<ThermalParams>;
  /** Host compute for real outputs (default: the process-wide pool). */
  pool?: SimComputePool;
  /** Registry the stick appears in (default: the process-wide one). */
  registry?: StickRegistry;
}

export interface SimNcs2Telemetry extends DeviceTelemetry {
  temperatureC: number;
  throttleLevel: number;
  simulated: true;
  /** The assumed guard temperatures (level 1, level 2). */
  guardC: [number, number];
}

export interface SimNcs2Stats {
  simulated: true;
  requests: number;
  completed: number;
  /** Requests whose real output arrived after the simulated stick would have returned it. */
  hostLate: number;
  hostLateShare: number;
  /** Host CPU time spent computing outputs for all simulated sticks (ms, shared pool). */
  hostComputeMs: number;
  /** Simulated executor time spent computing and pausing (ms). */
  stickComputeMs: number;
  stickPausedMs: number;
  /** Simulated USB busy time of this stick's link (the whole bus on USB 2). */
  usbBusyMs: number;
  temperatureC: number;
  throttleLevel: number;
  /** True when the host made more than 5% of results late: it, not the stick, limits throughput. */
  hostLimited: boolean;
}

export interface SimDeviceGraph extends DeviceGraph {
  /** What the stick computes in, whatever the model's own precision. */
  precision: 'fp16';
  profile: ModelTimingProfile;
}

interface LoadedGraph {
  poolKey: string;
  graph: SimDeviceGraph;
  batchSymbolic: boolean;
}

interface Job {
  settled: boolean;
  reject(err: Error): void;
  /** The request's booking, for the link's queue depths (linkState). */
  booking: Booking;
}

let usb2Bus: UsbLink | undefined;
let nextPort = 1;
/** Tolerance before a result counts as late because of the host (hand-off jitter). */
const LATE_TOLERANCE_MS = 1;

export class SimNcs2Device extends EventEmitter implements Device {
  readonly id: string;
  readonly kind = 'sim-ncs2' as const;
  /** As the sticks it models: a real NCS2 reports no throttle state over USB, so run times are the signal. */
  readonly throttlesSilently = true;
  readonly info: DeviceInfo;
  readonly maxInFlight: number;
  readonly parallelism: number;
  readonly usbPath: string;
  readonly stick: StickModel;
  private readonly timing: Ncs2TimingParams;
  private readonly pool: SimComputePool;
  private readonly registry: StickRegistry;
  private readonly usbDevice: UsbDeviceLike;
  /** This stick's entry in the registry (a replacement with the same id gets its own). */
  private readonly record: StickRecord | undefined;
  private readonly pacer = new Pacer();
  private readonly graphs = new Map<string, LoadedGraph>();
  private readonly jobs = new Set<Job>();
  private closed = false;
  private unplugged = false;
  private completed = 0;
  private hostLate = 0;

  constructor(options: SimNcs2Options = {}) {
    super();
    const usb = options.usb ?? 3;
    if (usb !== 2 && usb !== 3) throw new RangeError(`usb must be 2 or 3, got ${String(usb)}`);
    this.registry = options.registry ?? getStickRegistry();
    let port = options.port;
    if (port === undefined) {
      do port = nextPort++;
      while (this.registry.getStick(`sim-${port}`));
    }
    this.id = options.id ?? `sim-ncs2-${port}`;
    // A device replacing one with the same id (a redeploy) may take its port; anyone else may not.
    const holder = this.registry.getStick(`sim-${port}`);
    if (holder && holder.deviceId !== this.id) {
      throw new RangeError(`simulated USB port ${port} is taken by ${holder.deviceId ?? 'a stick'}; give another port or none`);
    }
    this.timing = timingParams(options.timing);
    const link = usb === 2 ? (options.bus ?? (usb2Bus ??= new UsbLink(2, this.timing))) : undefined;
    this.stick = new StickModel({ usb, link, timing: this.timing, thermal: options.thermal });
    this.parallelism = this.timing.executors;
    this.maxInFlight = options.maxInFlight ?? 8;
    this.pool = options.pool ?? sharedComputePool();
    this.usbDevice = { vendorId: MOVIDIUS_VENDOR_ID, productId: MYRIAD_X_BOOTED, bus: 'sim', ports: [port], speed: usb === 3 ? 'super' : 'high' };
    this.usbPath = `sim-${port}`;
    this.info = {
      name: `Intel NCS2 (simulated Myriad X, USB ${usb})`,
      description: 'simulated: real outputs from onnxruntime on the host CPU with FP16 rounding, paced to a Myriad X timing model calibrated on published figures',
      simulated: true,
      usb,
      usbPath: this.usbPath,
      executors: this.timing.executors,
      peakTops: this.timing.peakOpsPerSec / 1e12,
      precision: 'fp16',
    };
    this.pool.acquire();
    this.registry.on('detach', this.onDetach);
    this.record = this.registry.handleAttach(this.usbDevice, { simulated: true, deviceId: this.id });
  }

  private readonly onDetach = (record: StickRecord): void => {
    if (record === this.record) this.pulled();
  };

  /** Pulls the simulated stick out: the registry's usb detach path, as for a real stick. */
  simulateUnplug(): void {
    this.registry.handleDetach(this.usbDevice);
  }

  get isUnplugged(): boolean {
    return this.unplugged;
  }

  /** What a real stick's loss means: everything it was running fails now (the engine retries it elsewhere). */
  private pulled(): void {
    if (this.unplugged) return;
    this.unplugged = true;
    this.failAll(`${this.id} was unplugged (USB ${this.usbPath})`);
    this.emit('unplugged', this.id);
  }

  private failAll(message: string): void {
    const err = new DeviceError(message, this.id);
    for (const job of this.jobs) {
      if (job.settled) continue;
      job.settled = true;
      job.reject(err);
    }
    this.jobs.clear();
    this.pacer.clear();
  }

  private unavailable(): DeviceError | undefined {
    if (this.unplugged) return new DeviceError(`${this.id} was unplugged (USB ${this.usbPath})`, this.id);
    if (this.closed) return new DeviceError(`${this.id} is closed`, this.id);
    return undefined;
  }

  async load(request: LoadRequest): Promise<DeviceGraph> {
    const gone = this.unavailable();
    if (gone) throw gone;
    const existing = this.graphs.get(request.key);
    if (existing) return existing.graph;
    const where = typeof request.model === 'string' ? request.model : `a ${request.model.byteLength}-byte model`;
    let bytes: Uint8Array;
    try {
      bytes = typeof request.model === 'string' ? await fs.readFile(request.model) : request.model;
    } catch (err) {
      throw new ModelLoadError(`${this.id}: cannot read ${where}: ${(err as Error).message}`);
    }
    let info: ModelInfo;
    try {
      info = readModelInfo(bytes);
    } catch (err) {
      if (err instanceof ModelFormatError) throw new ModelLoadError(`${this.id}: cannot load ${where}: ${err.message}`);
      throw err;
    }
    let prepared: Uint8Array;
    let profile: ModelTimingProfile;
    try {
      ({ prepared, profile } = await prepareModelOffThread(bytes, where));
    } catch (err) {
      if (err instanceof ModelLoadError) throw new ModelLoadError(`${this.id}: ${err.message}`);
      throw new ModelLoadError(`${this.id}: cannot load ${where}: onnxruntime could not run it (${(err as Error).message.split('\n')[0]})`);
    }
    const poolKey = await this.pool.load(prepared, request.session);
    const graph: SimDeviceGraph = {
      key: request.key,
      inputNames: info.inputs.map((i) => i.name),
      outputNames: info.outputs.map((o) => o.name),
      executionProvider: 'sim-ncs2 (onnxruntime cpu, fp16-rounded)',
      precision: 'fp16',
      profile,
    };
    if (request.session.executionProviders?.some((p) => p !== 'cpu')) {
      graph.fallbackReason = `a simulated stick computes on the host CPU; providers ${request.session.executionProviders.join(', ')} do not apply`;
    }
    this.graphs.set(request.key, { poolKey, graph, batchSymbolic: typeof info.inputs[0]?.dims[0] === 'string' });
    return graph;
  }

  async unload(key: string): Promise<void> {
    const g = this.graphs.get(key);
    if (!g) return;
    this.graphs.delete(key);
    await this.pool.unload(g.poolKey);
  }

  run(request: RunRequest): Promise<RunResult> {
    const gone = this.unavailable();
    if (gone) return Promise.reject(gone);
    const g = this.graphs.get(request.graphKey);
    if (!g) return Promise.reject(new DeviceError(`${this.id}: graph ${request.graphKey.slice(0, 12)} is not loaded`, this.id));
    const batch = g.batchSymbolic ? Math.max(1, request.inputs[0]?.dims[0] ?? 1) : 1;
    let inputBytes = 0;
    for (const t of request.inputs) inputBytes += elementCount(t.dims) * wireBytesPerElement(t.type);
    let outputBytes = 0;
    if (request.outputs) for (const o of request.outputs) outputBytes += elementCount(o.dims) * wireBytesPerElement(o.type);
    else outputBytes = g.graph.profile.outputBytes * batch;
    const submitted = performance.now();
    const booking = this.stick.book(submitted, {
      ops: g.graph.profile.ops * batch,
      depthwiseShare: g.graph.profile.depthwiseShare,
      inputBytes,
      outputBytes,
      batch,
    });
    return new Promise<RunResult>((resolve, reject) => {
      const job: Job = { settled: false, reject, booking };
      this.jobs.add(job);
      let real: RunResult | undefined;
      let realAt = 0;
      let stickDone = false;
      const deliver = () => {
        if (job.settled || !real || !stickDone) return;
        job.settled = true;
        this.jobs.delete(job);
        const now = performance.now();
        this.completed++;
        // Late because of the host: its output arrived after the stick would have returned it
        // (not the pacer's own timer lateness, which delays both alike).
        if (realAt > booking.downloadEnd + LATE_TOLERANCE_MS) this.hostLate++;
        // inferMs is the executor's time on this request, thermal pauses included (that is how
        // throttling shows to the host, as with a real stick). USB transfers and waiting count as
        // device queue time. Reporting compute, not compute + transfer, also makes the engine keep
        // more requests in flight on a USB-bound stick, which hides the host's scheduling jitter.
        const inferMs = booking.computeMs + booking.pauseMs;
        // Done with the host's buffers now (as a device that moves them gives them back with its results).
        for (const t of request.inputs) releasePooled(t.data);
        resolve({
          outputs: real.outputs,
          inferMs,
          deviceQueueMs: Math.max(0, now - submitted - inferMs),
          transfer: {
            toDevice: { bytes: inputBytes, ms: booking.uploadMs, waitMs: booking.uploadStart - booking.submitMs },
            fromDevice: { bytes: outputBytes, ms: booking.downloadMs, waitMs: booking.downloadStart - booking.execEnd },
          },
        });
      };
      // A stick's runtime copies inputs over USB and the host keeps its buffer until the result: the
      // compute pool gets views no pool owns, which it copies, so a run lost to an unplug can be retried.
      const copied = request.inputs.map((t) => ({ ...t, data: unpooledView(t.data) }));
      this.pool.run(g.poolKey, copied, request.outputs).then(
        (result) => {
          real = result;
          realAt = performance.now();
          deliver();
        },
        (err: Error) => {
          if (job.settled) return;
          job.settled = true;
          this.jobs.delete(job);
          reject(err instanceof DeviceError ? new DeviceError(`${this.id}: ${err.message}`, this.id) : err);
        },
      );
      this.pacer.schedule(
        booking.downloadEnd,
        () => {
          stickDone = true;
          deliver();
        },
        (err) => {
          if (job.settled) return;
          job.settled = true;
          this.jobs.delete(job);
          reject(new DeviceError(`${this.id}: could not deliver the result: ${err.message}`, this.id));
        },
      );
    });
  }

  /** Requests waiting for or on the USB link now, per direction, from their bookings. */
  linkState(): { links: number; toDeviceQueued: number; fromDeviceQueued: number; toDeviceActive: number; fromDeviceActive: number; bytesPerSec: number } {
    const now = performance.now();
    let toDeviceQueued = 0;
    let fromDeviceQueued = 0;
    let toDeviceActive = 0;
    let fromDeviceActive = 0;
    for (const { booking: b } of this.jobs) {
      if (now < b.uploadStart) toDeviceQueued++;
      else if (now < b.uploadEnd) toDeviceActive++;
      else if (now >= b.execEnd && now < b.downloadStart) fromDeviceQueued++;
      else if (now >= b.downloadStart && now < b.downloadEnd) fromDeviceActive++;
    }
    const bytesPerSec = this.stick.usb === 3 ? this.timing.usb3BytesPerSec : this.timing.usb2BytesPerSec;
    return { links: 1, toDeviceQueued, fromDeviceQueued, toDeviceActive, fromDeviceActive, bytesPerSec };
  }

  telemetry(): SimNcs2Telemetry {
    this.stick.updateThermal(performance.now());
    const t = this.stick.thermal;
    return { temperatureC: t.temperatureC, throttleLevel: t.level, simulated: true, guardC: [t.params.guard1C, t.params.guard2C] };
  }

  /** Sets the simulated temperature now (tests; demonstrating thermal-aware scheduling). */
  forceTemperature(celsius: number): void {
    this.stick.forceTemperature(celsius, performance.now());
  }

  simStats(): SimNcs2Stats {
    const t = this.telemetry();
    const hostLateShare = this.completed ? this.hostLate / this.completed : 0;
    return {
      simulated: true,
      requests: this.stick.requests,
      completed: this.completed,
      hostLate: this.hostLate,
      hostLateShare,
      hostComputeMs: this.pool.hostComputeMs,
      stickComputeMs: this.stick.computeMs,
      stickPausedMs: this.stick.pausedMs,
      usbBusyMs: this.stick.link.busyMs,
      temperatureC: t.temperatureC,
      throttleLevel: t.throttleLevel,
      hostLimited: hostLateShare > 0.05,
    };
  }

  /** The published peak for FP16; nothing else runs on the stick (FP32 graphs run converted to FP16). */
  peakOpsPerSec(precision: Precision): number | undefined {
    return precision === 'fp16' ? this.timing.peakOpsPerSec : undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(`${this.id} was closed while the task ran`);
    this.registry.off('detach', this.onDetach);
    if (this.registry.getStick(this.usbPath) === this.record) this.registry.forget(this.usbPath);
    const keys = [...this.graphs.values()].map((g) => g.poolKey);
    this.graphs.clear();
    await Promise.all(keys.map((k) => this.pool.unload(k)));
    await this.pool.release();
  }
}

/** A view of the same bytes that no memory pool owns (so a device copies it instead of moving the buffer). */
function unpooledView<T extends ArrayBufferView>(data: T): T {
  const View = data.constructor as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;
  return new View(data.buffer, data.byteOffset, data.byteLength / (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
}
