import * as hdr from 'hdr-histogram-js';
import { monitorEventLoopDelay, type IntervalHistogram } from 'perf_hooks';

export interface LatencySummary {
  count: number;
  meanMs: number;
  minMs: number;
  p50: number;
  p95: number;
  p99: number;
  maxMs: number;
}

/** Latency distribution in microseconds (3 significant digits), reported in milliseconds. */
export class LatencyHistogram {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  /** Kept beside the histogram: its mean walks every bucket (milliseconds of event loop per call) and rounds. */
  private sumMs = 0;

  record(ms: number): void {
    this.h.recordValue(Math.max(1, Math.round(ms * 1000)));
    this.sumMs += ms;
  }

  get count(): number {
    return this.h.totalCount;
  }

  percentileMs(p: number): number {
    return this.h.totalCount ? this.h.getValueAtPercentile(p) / 1000 : 0;
  }

  summary(): LatencySummary {
    const n = this.h.totalCount;
    return {
      count: n,
      meanMs: n ? this.sumMs / n : 0,
      minMs: n ? this.h.minNonZeroValue / 1000 : 0,
      p50: this.percentileMs(50),
      p95: this.percentileMs(95),
      p99: this.percentileMs(99),
      maxMs: n ? this.h.maxValue / 1000 : 0,
    };
  }

  reset(): void {
    this.h.reset();
    this.sumMs = 0;
  }
}

/**
 * Events per second over a sliding window of fixed buckets: O(1) per event, no timestamps kept.
 */
export class RateWindow {
  private readonly counts: number[];
  private readonly bucketMs: number;
  private head = 0;
  private headStart: number;
  private readonly startedAt: number;

  constructor(readonly windowMs = 10_000, buckets = 40, now = Date.now()) {
    this.bucketMs = windowMs / buckets;
    this.counts = new Array<number>(buckets).fill(0);
    this.headStart = now;
    this.startedAt = now;
  }

  private advance(now: number): void {
    while (now - this.headStart >= this.bucketMs) {
      this.head = (this.head + 1) % this.counts.length;
      this.counts[this.head] = 0;
      this.headStart += this.bucketMs;
      if (now - this.headStart > this.windowMs) {
        // idle for longer than the window: clear everything at once
        this.counts.fill(0);
        this.headStart = now - ((now - this.headStart) % this.bucketMs);
      }
    }
  }

  add(n = 1, now = Date.now()): void {
    this.advance(now);
    this.counts[this.head] += n;
  }

  /** Rate over the window, or over the time since the first event when that is shorter. */
  perSecond(now = Date.now()): number {
    this.advance(now);
    let total = 0;
    for (const c of this.counts) total += c;
    const span = Math.min(this.windowMs, Math.max(now - this.startedAt, this.bucketMs));
    return (total * 1000) / span;
  }
}

const EVENT_LOOP_RESOLUTION_MS = 10;

/**
 * The main thread's event-loop delay: the statistic that says whether inference blocks Node-RED.
 * Node's histogram records the whole interval between its timer's ticks (an idle loop reads
 * about 10.2 ms at a 10 ms resolution), so the resolution is subtracted to report the delay itself.
 */
export class EventLoopMonitor {
  private readonly h: IntervalHistogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  private running = false;

  start(): void {
    if (!this.running) this.h.enable();
    this.running = true;
  }

  stop(): void {
    if (this.running) this.h.disable();
    this.running = false;
  }

  reset(): void {
    this.h.reset();
  }

  summary(): { p50: number; p99: number; maxMs: number; meanMs: number } {
    const ms = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - EVENT_LOOP_RESOLUTION_MS) : 0);
    if (this.h.count === 0) return { p50: 0, p99: 0, maxMs: 0, meanMs: 0 };
    return { p50: ms(this.h.percentile(50)), p99: ms(this.h.percentile(99)), maxMs: ms(this.h.max), meanMs: ms(this.h.mean) };
  }
}
