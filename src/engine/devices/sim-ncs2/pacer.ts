/**
 * Calls functions at given times (performance.now() ms) with one timer for all of them.
 * Node's timers have millisecond resolution, so everything due within a fraction of a millisecond
 * runs in the same turn; a stick keeps enough requests in flight to hide that granularity.
 */
export class Pacer {
  private readonly due: Array<{ at: number; fn: () => void; fail: (err: Error) => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  /**
   * Schedules `fn` at `at`; in order of time, ties in order of scheduling. A throw from `fn` goes to
   * `fail` (it runs in a timer, where an uncaught error would end the process).
   */
  schedule(at: number, fn: () => void, fail: (err: Error) => void): void {
    let lo = 0;
    let hi = this.due.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.due[mid].at <= at) lo = mid + 1;
      else hi = mid;
    }
    this.due.splice(lo, 0, { at, fn, fail });
    if (at < this.timerAt) this.arm();
  }

  get pending(): number {
    return this.due.length;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.due.length === 0) return;
    const at = this.due[0].at;
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - performance.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    // Half a millisecond early is closer to the target than a whole timer tick late.
    const now = performance.now() + 0.5;
    let n = 0;
    while (n < this.due.length && this.due[n].at <= now) n++;
    const ready = this.due.splice(0, n);
    this.arm();
    for (const { fn, fail } of ready) {
      try {
        fn();
      } catch (err) {
        fail(err as Error);
      }
    }
  }

  /** Drops everything scheduled (the owner settles what it was waiting for). */
  clear(): void {
    this.due.length = 0;
    this.arm();
  }
}
