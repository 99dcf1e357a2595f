/**
 * Capacity planner: predicts what N simulated sticks would do for a model, by running the same
 * timing model as the paced SimNcs2Device (stick-model.ts) in virtual time: a closed loop keeps
 * `requestsInFlight` requests outstanding, every completion immediately submits the next one to
 * the stick with the fewest in flight. No pacing and no host CPU: it answers "would another stick
 * help?" in milliseconds, for any N.
 */
import { StickModel } from '../devices/sim-ncs2/stick-model';
import { UsbLink } from '../devices/sim-ncs2/lanes';
import { DEFAULT_THERMAL, type ThermalParams } from '../devices/sim-ncs2/thermal-model';
import { timingParams, type Ncs2TimingParams, type UsbGeneration } from '../devices/sim-ncs2/timing';

export interface PlanModel {
  /** Ops of one inference (2 per MAC), as the engine counts them. */
  opsPerInference: number;
  /** Bytes of one request's inputs on the wire (float tensors as FP16). */
  inputBytes: number;
  outputBytes: number;
  /** Share of the ops in depthwise convolutions (0 when unknown or none). */
  depthwiseShare?: number;
}

export interface PlanOptions {
  sticks: number;
  usb: UsbGeneration;
  /** Requests kept outstanding across all sticks (default 4 per stick, the plugin's optimum). */
  requestsInFlight?: number;
  /**
   * USB 2 only: buses (host controllers) the sticks are spread over, round robin (default 1: every
   * stick shares one bus). USB 3 sticks each have their own link.
   */
  usb2Buses?: number;
  timing?: Partial<Ncs2TimingParams>;
  thermal?: Partial<ThermalParams>;
  /** Completions measured after warm-up (more: smoother percentiles). */
  completions?: number;
}

export type Bottleneck = 'stick executors' | 'usb link' | 'shared usb bus' | 'requests in flight';

export interface Plan {
  simulated: true;
  sticks: number;
  usb: UsbGeneration;
  requestsInFlight: number;
  /** Throughput of cool sticks (what a benchmark of a minute or so measures). */
  throughputFps: number;
  perStickFps: number;
  latencyMs: { p50: number; p99: number; mean: number };
  bottleneck: Bottleneck;
  /** Busy share of the busiest executor pool and of the busiest USB link direction. */
  utilization: { executors: number; usb: number };
  /** Arithmetic TOPS each stick achieves (the published peak is 1). */
  topsPerStick: number;
  /** After thermal equilibrium under sustained load (assumed thermal parameters, see thermal-model.ts). */
  sustained: { throughputFps: number; temperatureC: number; throttle: 'none' | 'level 1 at times' | 'level 1' | 'level 2 at times' | 'level 2' };
}

interface Pending {
  at: number;
  stick: number;
  submitted: number;
  computeMs: number;
  pauseMs: number;
  upMs: number;
  downMs: number;
}

/** Binary min-heap on `at`. */
class EventQueue {
  private readonly items: Pending[] = [];
  get size(): number {
    return this.items.length;
  }
  push(p: Pending): void {
    const a = this.items;
    a.push(p);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent].at <= a[i].at) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }
  pop(): Pending {
    const a = this.items;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l].at < a[m].at) m = l;
        if (r < a.length && a[r].at < a[m].at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function checkPlanInputs(model: PlanModel, o: PlanOptions): void {
  if (!Number.isInteger(o.sticks) || o.sticks < 1) throw new RangeError(`sticks must be a positive integer, got ${o.sticks}`);
  if (o.usb !== 2 && o.usb !== 3) throw new RangeError(`usb must be 2 or 3, got ${String(o.usb)}`);
  if (o.usb2Buses !== undefined && (!Number.isInteger(o.usb2Buses) || o.usb2Buses < 1)) throw new RangeError(`usb2Buses must be a positive integer, got ${o.usb2Buses}`);
  if (o.requestsInFlight !== undefined && (!Number.isInteger(o.requestsInFlight) || o.requestsInFlight < 1)) {
    throw new RangeError(`requestsInFlight must be a positive integer, got ${o.requestsInFlight}`);
  }
  for (const k of ['opsPerInference', 'inputBytes', 'outputBytes'] as const) {
    if (!(Number.isFinite(model[k]) && model[k] >= 0)) throw new RangeError(`${k} must be a finite number >= 0, got ${model[k]}`);
  }
}

export function planThroughput(model: PlanModel, options: PlanOptions): Plan {
  checkPlanInputs(model, options);
  const timing = timingParams(options.timing);
  const inFlight = options.requestsInFlight ?? 4 * options.sticks;
  const measured = options.completions ?? 3000;
  const warmup = Math.max(2 * inFlight, 50);
  const busCount = options.usb === 2 ? Math.min(options.sticks, Math.max(1, Math.floor(options.usb2Buses ?? 1))) : 0;
  const buses = Array.from({ length: busCount }, () => new UsbLink(2, timing));
  const busOf = (i: number) => (busCount ? i % busCount : -1);
  // Cool run: thermal off, as the published benchmarks (short runs) measure.
  const sticks = Array.from({ length: options.sticks }, (_, i) => new StickModel({ usb: options.usb, link: busCount ? buses[busOf(i)] : undefined, timing, thermal: { enabled: false } }));
  const outstanding = new Array<number>(sticks.length).fill(0);
  const request = { ops: model.opsPerInference, depthwiseShare: model.depthwiseShare ?? 0, inputBytes: model.inputBytes, outputBytes: model.outputBytes };
  const queue = new EventQueue();
  const submit = (now: number) => {
    let s = 0;
    for (let i = 1; i < sticks.length; i++) if (outstanding[i] < outstanding[s]) s = i;
    outstanding[s]++;
    const b = sticks[s].book(now, request);
    queue.push({ at: b.downloadEnd, stick: s, submitted: now, computeMs: b.computeMs, pauseMs: b.pauseMs, upMs: b.uploadMs, downMs: b.downloadMs });
  };
  for (let i = 0; i < inFlight; i++) submit(0);
  const latencies: number[] = [];
  // Busy time of the requests completed in the measurement window, per stick.
  const compute = new Array<number>(sticks.length).fill(0);
  const occupied = new Array<number>(sticks.length).fill(0);
  const up = new Array<number>(sticks.length).fill(0);
  const down = new Array<number>(sticks.length).fill(0);
  let done = 0;
  let windowStart = 0;
  let windowEnd = 0;
  while (done < warmup + measured) {
    const ev = queue.pop();
    outstanding[ev.stick]--;
    done++;
    if (done === warmup) {
      windowStart = ev.at;
    } else if (done > warmup) {
      latencies.push(ev.at - ev.submitted);
      windowEnd = ev.at;
      compute[ev.stick] += ev.computeMs;
      occupied[ev.stick] += ev.computeMs + ev.pauseMs;
      up[ev.stick] += ev.upMs;
      down[ev.stick] += ev.downMs;
    }
    submit(ev.at);
  }
  const spanMs = Math.max(1e-9, windowEnd - windowStart);
  const throughputFps = (measured / spanMs) * 1000;
  const perExecutors = spanMs * timing.executors;
  const execUtil = Math.min(1, Math.max(...occupied) / perExecutors);
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  // A USB 2 bus carries both directions of every stick on it; a USB 3 link per stick, each direction apart.
  let usbUtil = 0;
  if (busCount) {
    for (let b = 0; b < busCount; b++) {
      let t = 0;
      for (let i = 0; i < sticks.length; i++) if (busOf(i) === b) t += up[i] + down[i];
      usbUtil = Math.max(usbUtil, t / spanMs);
    }
  } else {
    usbUtil = Math.max(...up, ...down) / spanMs;
  }
  usbUtil = Math.min(1, usbUtil);
  let bottleneck: Bottleneck = 'requests in flight';
  if (Math.max(execUtil, usbUtil) >= 0.9) bottleneck = usbUtil > execUtil ? (busCount && busCount < options.sticks ? 'shared usb bus' : 'usb link') : 'stick executors';
  latencies.sort((a, b) => a - b);
  const mean = sum(latencies) / Math.max(1, latencies.length);
  const perStickFps = throughputFps / options.sticks;
  const duty = Math.min(1, Math.max(...compute) / perExecutors);
  return {
    simulated: true,
    sticks: options.sticks,
    usb: options.usb,
    requestsInFlight: inFlight,
    throughputFps,
    perStickFps,
    latencyMs: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), mean },
    bottleneck,
    utilization: { executors: execUtil, usb: usbUtil },
    topsPerStick: (perStickFps * model.opsPerInference) / 1e12,
    sustained: sustainedEstimate(throughputFps, duty, { ...DEFAULT_THERMAL, ...options.thermal }),
  };
}

/**
 * Sustained throughput from the thermal model's steady state (analytic, so the planner stays
 * fast): T_ss(duty) = ambient + rise x duty. Below the first guard nothing changes; otherwise the
 * throttle pauses cut the duty (and, with busy executors, the throughput in proportion) until the
 * temperature holds in the guard's hysteresis band, or the stick stays throttled if even the
 * paused duty is too hot.
 */
export function sustainedEstimate(coolFps: number, duty: number, t: ThermalParams): Plan['sustained'] {
  const steady = (d: number) => t.ambientC + t.riseAtFullDutyC * d;
  if (!t.enabled || steady(duty) < t.guard1C || duty <= 0) return { throughputFps: coolFps, temperatureC: steady(duty), throttle: 'none' };
  const band = (guard: number) => {
    const target = guard - t.hysteresisC / 2;
    const d = (target - t.ambientC) / t.riseAtFullDutyC;
    return { fps: coolFps * (d / duty), temperatureC: target };
  };
  const d1 = duty / (1 + t.pause1);
  if (steady(d1) < t.guard1C) return { ...pick(band(t.guard1C)), throttle: 'level 1 at times' };
  if (steady(d1) < t.guard2C) return { throughputFps: coolFps / (1 + t.pause1), temperatureC: steady(d1), throttle: 'level 1' };
  const d2 = duty / (1 + t.pause2);
  if (steady(d2) < t.guard2C) return { ...pick(band(t.guard2C)), throttle: 'level 2 at times' };
  return { throughputFps: coolFps / (1 + t.pause2), temperatureC: steady(d2), throttle: 'level 2' };
}

function pick(b: { fps: number; temperatureC: number }): { throughputFps: number; temperatureC: number } {
  return { throughputFps: b.fps, temperatureC: b.temperatureC };
}
