import type { NodeStatus } from './red';

export interface StatusWords {
  loading: string;
  ready: string;
  /** Shown instead of a rate once nothing has completed for a whole window (default: the ready word). */
  idle?: string;
  failed: string;
  dropped: string;
}

export type MeterState = 'loading' | 'ready' | 'failed';

export interface StatusMeterOptions {
  status(status: NodeStatus): void;
  /** Called at most once per `warnEveryMs` while messages are being dropped. */
  warnDrops(droppedSinceLastWarning: number): void;
  words: StatusWords;
  intervalMs?: number;
  /** The rate covers the completions of the last windowMs (default 10 s, the engine's statistics window). */
  windowMs?: number;
  warnEveryMs?: number;
  /** Milliseconds on a monotonic clock (tests pass their own). */
  now?: () => number;
}

/** Completions within one timer interval: how many, and when the first and the last came. */
interface Bucket {
  count: number;
  first: number;
  last: number;
}

function formatRate(perSecond: number): string {
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

/**
 * A node's status line: state, device and message rate. Counting a message is an increment and a
 * clock read; the status itself is recomputed on a timer (once a second by default) and pushed only
 * when its text changes, so a busy node does not send the editor a status per message.
 *
 * The rate is steady: it is taken over a window of several intervals (10 s by default) as the
 * completions after the window's first one divided by the time from the first to the last, so a
 * flow sending one message a second reads 1.0/s whichever interval the messages fall in (a count
 * per interval would flicker between 0, 1 and 2). Once nothing has completed for a whole window
 * the status says idle.
 */
export class StatusMeter {
  private state: MeterState = 'loading';
  private device = '';
  private readonly now: () => number;
  private readonly buckets: Bucket[] = [];
  private current: Bucket = { count: 0, first: 0, last: 0 };
  private everCompleted = false;
  /** Completions per second over the window; undefined when there were none. */
  private rate: number | undefined;
  private droppedTotal = 0;
  private droppedUnwarned = 0;
  private lastWarning = -Infinity;
  private shown = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: StatusMeterOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.update(), this.options.intervalMs ?? 1000);
    this.timer.unref();
    this.render();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  setState(state: MeterState, device = this.device): void {
    this.state = state;
    this.device = device;
    this.render();
  }

  completed(): void {
    const now = this.now();
    if (this.current.count === 0) this.current.first = now;
    this.current.last = now;
    this.current.count++;
  }

  dropped(): void {
    this.droppedTotal++;
    this.droppedUnwarned++;
  }

  get droppedCount(): number {
    return this.droppedTotal;
  }

  /** Closes the current interval and recomputes the status (the timer calls it every interval). */
  update(): void {
    const now = this.now();
    this.buckets.push(this.current);
    this.current = { count: 0, first: 0, last: 0 };
    const kept = Math.max(1, Math.ceil((this.options.windowMs ?? 10_000) / (this.options.intervalMs ?? 1000)));
    if (this.buckets.length > kept) this.buckets.splice(0, this.buckets.length - kept);
    this.rate = this.windowRate();
    if (this.droppedUnwarned > 0 && now - this.lastWarning >= (this.options.warnEveryMs ?? 60_000)) {
      this.options.warnDrops(this.droppedUnwarned);
      this.droppedUnwarned = 0;
      this.lastWarning = now;
    }
    this.render();
  }

  private windowRate(): number | undefined {
    const filled = this.buckets.filter((b) => b.count > 0);
    if (filled.length === 0) return undefined;
    this.everCompleted = true;
    const count = filled.reduce((sum, b) => sum + b.count, 0);
    const span = filled[filled.length - 1].last - filled[0].first;
    // One completion (or a burst at one instant) has no interval to divide by: it counts over the window.
    if (count < 2 || span <= 0) return (count * 1000) / (this.options.windowMs ?? 10_000);
    return ((count - 1) * 1000) / span;
  }

  private render(): void {
    const { words } = this.options;
    let status: NodeStatus;
    if (this.state === 'loading') status = { fill: 'yellow', shape: 'ring', text: words.loading };
    else if (this.state === 'failed') status = { fill: 'red', shape: 'ring', text: words.failed };
    else {
      const busy = this.rate !== undefined;
      const parts = [busy ? `${formatRate(this.rate!)}/s` : this.everCompleted ? (words.idle ?? words.ready) : words.ready, this.device];
      if (this.droppedTotal > 0) parts.push(`${this.droppedTotal} ${words.dropped}`);
      status = { fill: 'green', shape: busy ? 'dot' : 'ring', text: parts.filter(Boolean).join(' · ') };
    }
    const key = `${status.fill}|${status.shape}|${status.text}`;
    if (key === this.shown) return;
    this.shown = key;
    this.options.status(status);
  }
}
