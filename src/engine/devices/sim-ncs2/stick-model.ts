/**
 * One simulated stick in the timing model: its USB link, its executors and its thermal state.
 * `book()` places a request on all three at arrival (uploads fill link gaps; executors serve in
 * arrival order) and returns when each stage happens. The device calls it with wall-clock time and
 * paces real results to it; the planner calls it with virtual time. Same code, same numbers.
 */
import { UsbLink } from './lanes';
import { ThermalModel, type ThermalParams } from './thermal-model';
import { DEFAULT_TIMING, executorTimeMs, transferTimeMs, type Ncs2TimingParams, type UsbGeneration } from './timing';

export interface StickRequest {
  /** Ops of the whole request (batch included). */
  ops: number;
  depthwiseShare: number;
  inputBytes: number;
  outputBytes: number;
  /** Inferences in the request: they share one request overhead. */
  batch?: number;
}

export interface Booking {
  submitMs: number;
  uploadStart: number;
  uploadEnd: number;
  executor: number;
  execStart: number;
  /** End of computation (the pause, if any, follows it on the same executor). */
  execEnd: number;
  computeMs: number;
  pauseMs: number;
  throttleLevel: number;
  downloadStart: number;
  downloadEnd: number;
  /** Link time of the transfers themselves (without waiting or interleaving). */
  uploadMs: number;
  downloadMs: number;
  /** Time the request needed on the stick without waiting: upload + compute + pause + download. */
  serviceMs: number;
  /** Time it waited behind other requests (link or executors). */
  waitMs: number;
}

export interface StickModelOptions {
  usb?: UsbGeneration;
  /** A shared USB 2 bus; USB 3 sticks get their own link. */
  link?: UsbLink;
  timing?: Ncs2TimingParams;
  thermal?: Partial<ThermalParams>;
}

export class StickModel {
  readonly timing: Ncs2TimingParams;
  readonly link: UsbLink;
  readonly thermal: ThermalModel;
  private readonly freeAt: number[];
  /** Compute intervals not yet folded into the thermal model, in start order. */
  private busy: Array<[number, number]> = [];
  private thermalAt: number | undefined;
  computeMs = 0;
  pausedMs = 0;
  requests = 0;

  constructor(o: StickModelOptions = {}) {
    this.timing = o.timing ?? DEFAULT_TIMING;
    this.link = o.link ?? new UsbLink(o.usb ?? 3, this.timing);
    this.thermal = new ThermalModel(o.thermal);
    this.freeAt = new Array<number>(this.timing.executors).fill(-Infinity);
  }

  get usb(): UsbGeneration {
    return this.link.generation;
  }

  /** Brings the thermal model to `now` with the duty cycle of the compute booked in between. */
  updateThermal(now: number): void {
    if (this.thermalAt === undefined) {
      this.thermalAt = now;
      this.thermal.advance(now, 0);
      return;
    }
    const from = this.thermalAt;
    if (now <= from) return;
    let busy = 0;
    const keep: Array<[number, number]> = [];
    for (const [s, e] of this.busy) {
      busy += Math.max(0, Math.min(e, now) - Math.max(s, from));
      if (e > now) keep.push([s, e]);
    }
    this.busy = keep;
    this.thermalAt = now;
    this.thermal.advance(now, busy / ((now - from) * this.timing.executors));
  }

  /** Forces the temperature now (tests; a stick that starts hot). */
  forceTemperature(celsius: number, now: number): void {
    this.updateThermal(now);
    this.thermal.force(celsius, now);
  }

  book(now: number, r: StickRequest): Booking {
    this.updateThermal(now);
    this.link.prune(now);
    const [uploadStart, uploadEnd] = this.link.upload(now, r.inputBytes);
    let executor = 0;
    for (let i = 1; i < this.freeAt.length; i++) if (this.freeAt[i] < this.freeAt[executor]) executor = i;
    const execStart = Math.max(uploadEnd, this.freeAt[executor]);
    const batch = Math.max(1, r.batch ?? 1);
    const perInference = executorTimeMs(r.ops / batch, r.depthwiseShare, this.timing) - this.timing.requestOverheadMs;
    const computeMs = this.timing.requestOverheadMs + batch * perInference;
    const throttleLevel = this.thermal.level;
    const pauseMs = this.thermal.pauseMs(computeMs);
    const execEnd = execStart + computeMs;
    this.freeAt[executor] = execEnd + pauseMs;
    this.busy.push([execStart, execEnd]);
    const [downloadStart, downloadEnd] = this.link.download(execEnd, r.outputBytes);
    const uploadMs = transferTimeMs(r.inputBytes, this.link.generation, this.timing);
    const downloadMs = transferTimeMs(r.outputBytes, this.link.generation, this.timing);
    const serviceMs = uploadMs + computeMs + pauseMs + downloadMs;
    this.computeMs += computeMs;
    this.pausedMs += pauseMs;
    this.requests++;
    return {
      submitMs: now,
      uploadStart,
      uploadEnd,
      executor,
      execStart,
      execEnd,
      computeMs,
      pauseMs,
      throttleLevel,
      downloadStart,
      downloadEnd,
      uploadMs,
      downloadMs,
      serviceMs,
      waitMs: Math.max(0, downloadEnd - now - serviceMs),
    };
  }
}
