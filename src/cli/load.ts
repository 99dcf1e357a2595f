/**
 * Closed-loop load generation and measurement shared by `ncs2 bench` and `npm run bench`:
 * keep a fixed number of tasks outstanding, time a window after a warm-up, and report what was
 * measured in that window only (throughput, latency percentiles, the main thread's event-loop
 * delay and utilization).
 */
import * as os from 'os';
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'perf_hooks';
import { LatencyHistogram } from '../engine';
import type { InferenceEngine, GraphHandle, Feeds, LatencySummary } from '../engine';

export interface EventLoopSummary {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  /** Share of the window the main thread was busy (perf_hooks eventLoopUtilization). */
  utilization: number;
}

export interface WindowResult {
  /** Tasks completed inside the timed window. */
  completed: number;
  failed: number;
  /** First few distinct failure messages. */
  errors: string[];
  seconds: number;
  tasksPerSec: number;
  /** Samples per second (tasks x samples per task). */
  inferencesPerSec: number;
  /** Submission to result, as the caller sees it. */
  latencyMs: LatencySummary;
  eventLoopDelayMs: EventLoopSummary;
}

export interface Progress {
  phase: 'warm-up' | 'measure';
  elapsedMs: number;
  totalMs: number;
  completed: number;
}

/** Sampling interval of the event-loop delay histogram (ms), the engine monitor's own. */
const ELD_RESOLUTION_MS = 10;

/**
 * Samples of the main thread's event-loop delay, in ms, and its utilization over the same window.
 * Node's histogram records the whole interval between its timer's callbacks, so an idle loop reads
 * about the resolution (10 ms here): the resolution is subtracted (never below 0) to report the
 * delay alone, the time a timer or an I/O callback waited beyond its due time.
 */
export class EventLoopProbe {
  private readonly h = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  private elu?: EventLoopUtilization;

  start(): void {
    this.h.reset();
    this.h.enable();
    this.elu = performance.eventLoopUtilization();
  }

  stop(): EventLoopSummary {
    this.h.disable();
    const elu = performance.eventLoopUtilization(this.elu);
    const ms = (ns: number) => (Number.isFinite(ns) && this.h.count > 0 ? Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS) : 0);
    return { p50: ms(this.h.percentile(50)), p99: ms(this.h.percentile(99)), max: ms(this.h.max), mean: ms(this.h.mean), utilization: elu.utilization };
  }
}

export interface DriveOptions {
  /** Tasks kept outstanding. */
  parallel: number;
  warmupMs: number;
  durationMs: number;
  samplesPerTask: number;
  /** Feeds for the next task (a fresh pooled tensor, or the same plain arrays every time). */
  feeds(): Feeds;
  onProgress?(p: Progress): void;
  /** Called once when the warm-up ends and before timing starts. */
  onWarm?(): void | Promise<void>;
}

const PROGRESS_EVERY_MS = 250;
const MAX_ERRORS = 5;

/**
 * Drives one graph with `parallel` submitters, each awaiting its task before the next, as
 * concurrent callers (flows, requests) would. Completions during the warm-up are not counted.
 */
export async function driveEngine(engine: InferenceEngine, handle: GraphHandle, options: DriveOptions): Promise<WindowResult> {
  const latency = new LatencyHistogram();
  const probe = new EventLoopProbe();
  const errors = new Set<string>();
  let completed = 0;
  let failed = 0;
  let timing = false;
  let phaseStart = performance.now();
  let phaseEnd = phaseStart + options.warmupMs;
  let stopAt = phaseEnd;
  const progress = (phase: Progress['phase'], totalMs: number) =>
    options.onProgress?.({ phase, elapsedMs: performance.now() - phaseStart, totalMs, completed });

  const submitter = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const t0 = performance.now();
      try {
        await engine.submit(handle, options.feeds());
        if (timing && performance.now() <= stopAt) {
          completed++;
          latency.record(performance.now() - t0);
        }
      } catch (err) {
        if (timing) failed++;
        if (errors.size < MAX_ERRORS) errors.add((err as Error).message);
        // A model that fails before anything succeeded fails every task: stop instead of
        // spinning through the window; later failures are counted and reported.
        if (!timing || completed === 0) stopAt = 0;
      }
    }
  };

  const ticker = setInterval(() => progress(timing ? 'measure' : 'warm-up', timing ? options.durationMs : options.warmupMs), PROGRESS_EVERY_MS);
  try {
    if (options.warmupMs > 0) {
      await Promise.all(Array.from({ length: options.parallel }, submitter));
      if (errors.size > 0) throw new Error([...errors][0]);
    }
    await options.onWarm?.();
    timing = true;
    phaseStart = performance.now();
    phaseEnd = phaseStart + options.durationMs;
    stopAt = phaseEnd;
    probe.start();
    await Promise.all(Array.from({ length: options.parallel }, submitter));
  } finally {
    clearInterval(ticker);
  }
  const seconds = Math.max(1e-9, (Math.min(performance.now(), phaseEnd) - phaseStart) / 1000);
  const eventLoopDelayMs = probe.stop();
  return {
    completed,
    failed,
    errors: [...errors],
    seconds,
    tasksPerSec: completed / seconds,
    inferencesPerSec: (completed * options.samplesPerTask) / seconds,
    latencyMs: latency.summary(),
    eventLoopDelayMs,
  };
}

/** Share of CPU time all cores spent idle between two os.cpus() snapshots. */
function idleShare(a: os.CpuInfo[], b: os.CpuInfo[]): number {
  let idle = 0;
  let total = 0;
  b.forEach((cpu, i) => {
    const prev = a[i]?.times;
    if (!prev) return;
    const t = cpu.times;
    idle += t.idle - prev.idle;
    total += t.user - prev.user + (t.nice - prev.nice) + (t.sys - prev.sys) + (t.idle - prev.idle) + (t.irq - prev.irq);
  });
  return total > 0 ? idle / total : 1;
}

export interface QuietResult {
  /** Idle share of all cores over the last window looked at. */
  idle: number;
  waitedMs: number;
  quiet: boolean;
}

/**
 * Waits (bounded) until other processes leave the cores mostly idle, so a measurement does not
 * start in the middle of someone else's burst. Returns what it saw; it never fails the caller.
 */
export async function waitForQuietHost(options: { minIdle?: number; windowMs?: number; maxWaitMs?: number } = {}): Promise<QuietResult> {
  const minIdle = options.minIdle ?? 0.85;
  const windowMs = options.windowMs ?? 500;
  const maxWaitMs = options.maxWaitMs ?? 20_000;
  const start = performance.now();
  for (;;) {
    const a = os.cpus();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const idle = idleShare(a, os.cpus());
    const waitedMs = performance.now() - start;
    if (idle >= minIdle) return { idle, waitedMs, quiet: true };
    if (waitedMs >= maxWaitMs) return { idle, waitedMs, quiet: false };
  }
}
