import type { NodeStatus } from './red';

export interface StatusWords {
  loading: string;
  ready: string;
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
  warnEveryMs?: number;
}

function formatRate(perSecond: number): string {
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

/**
 * A node's status line: state, device and message rate. Counting a message is an increment; the
 * status itself is recomputed on a timer (once a second by default) and pushed only when its text
 * changes, so a busy node does not send the editor a status per message.
 */
export class StatusMeter {
  private state: MeterState = 'loading';
  private device = '';
  private completedInWindow = 0;
  private windowStart = performance.now();
  private rate = 0;
  private droppedTotal = 0;
  private droppedUnwarned = 0;
  private lastWarning = -Infinity;
  private shown = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: StatusMeterOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.options.intervalMs ?? 1000);
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
    this.completedInWindow++;
  }

  dropped(): void {
    this.droppedTotal++;
    this.droppedUnwarned++;
  }

  get droppedCount(): number {
    return this.droppedTotal;
  }

  private tick(): void {
    const now = performance.now();
    this.rate = (this.completedInWindow * 1000) / Math.max(1, now - this.windowStart);
    this.completedInWindow = 0;
    this.windowStart = now;
    if (this.droppedUnwarned > 0 && now - this.lastWarning >= (this.options.warnEveryMs ?? 60_000)) {
      this.options.warnDrops(this.droppedUnwarned);
      this.droppedUnwarned = 0;
      this.lastWarning = now;
    }
    this.render();
  }

  private render(): void {
    const { words } = this.options;
    let status: NodeStatus;
    if (this.state === 'loading') status = { fill: 'yellow', shape: 'ring', text: words.loading };
    else if (this.state === 'failed') status = { fill: 'red', shape: 'ring', text: words.failed };
    else {
      const busy = this.rate > 0;
      const parts = [busy ? `${formatRate(this.rate)}/s` : words.ready, this.device];
      if (this.droppedTotal > 0) parts.push(`${this.droppedTotal} ${words.dropped}`);
      status = { fill: 'green', shape: busy ? 'dot' : 'ring', text: parts.filter(Boolean).join(' · ') };
    }
    const key = `${status.fill}|${status.shape}|${status.text}`;
    if (key === this.shown) return;
    this.shown = key;
    this.options.status(status);
  }
}
