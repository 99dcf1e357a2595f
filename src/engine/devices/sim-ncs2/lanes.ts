/**
 * Resources of the timing model, in milliseconds of one clock (wall or virtual).
 *
 * A Lane is one direction of a link. Transfers are booked when a request arrives, so a download
 * booked for when its computation ends already sits in the future while later arrivals book their
 * uploads. USB moves data in packets (512 bytes on USB 2, 1 KB bursts on USB 3) and the host
 * controller interleaves transfers, so a big upload flows around a small download instead of
 * waiting for a gap as large as itself: a booking fills the free time from its earliest start
 * until it has its whole duration, possibly in pieces.
 */
import { transferTimeMs, type Ncs2TimingParams, type UsbGeneration } from './timing';

export class Lane {
  /** Booked [start, end) intervals, sorted, never overlapping. */
  private booked: Array<[number, number]> = [];
  /** Total booked time, for utilization. */
  busyMs = 0;

  /** Books `duration` of link time from `earliest` on; returns when the transfer starts and ends. */
  book(earliest: number, duration: number): [number, number] {
    if (duration <= 0) return [earliest, earliest];
    this.busyMs += duration;
    const pieces: Array<[number, number]> = [];
    let t = earliest;
    let left = duration;
    for (const [s, e] of this.booked) {
      if (e <= t) continue;
      if (s > t) {
        const take = Math.min(s - t, left);
        pieces.push([t, t + take]);
        left -= take;
        if (left <= 0) break;
      }
      t = Math.max(t, e);
    }
    if (left > 0) pieces.push([t, t + left]);
    const merged = [...this.booked, ...pieces].sort((a, b) => a[0] - b[0]);
    // Coalesce touching intervals so the list stays short.
    const out: Array<[number, number]> = [];
    for (const iv of merged) {
      const last = out[out.length - 1];
      if (last && iv[0] <= last[1] + 1e-9) last[1] = Math.max(last[1], iv[1]);
      else out.push([iv[0], iv[1]]);
    }
    this.booked = out;
    return [pieces[0][0], pieces[pieces.length - 1][1]];
  }

  /**
   * Forgets intervals that ended before `t`. Only the clock's present may be given: a download
   * is booked ahead (at its computation's end) while later arrivals still book uploads before it.
   */
  prune(t: number): void {
    let n = 0;
    while (n < this.booked.length && this.booked[n][1] <= t) n++;
    if (n > 0) this.booked.splice(0, n);
  }
}

/**
 * The USB path between the host and one stick (USB 3: full duplex, one per stick) or a whole
 * USB 2 bus (half duplex, shared by every stick on it: uploads and downloads take turns).
 */
export class UsbLink {
  readonly up: Lane;
  readonly down: Lane;

  constructor(readonly generation: UsbGeneration, private readonly timing: Ncs2TimingParams) {
    this.up = new Lane();
    this.down = generation === 3 ? new Lane() : this.up;
  }

  upload(earliest: number, bytes: number): [number, number] {
    return this.up.book(earliest, transferTimeMs(bytes, this.generation, this.timing));
  }

  download(earliest: number, bytes: number): [number, number] {
    return this.down.book(earliest, transferTimeMs(bytes, this.generation, this.timing));
  }

  /** Called with the present time on each arrival (see Lane.prune). */
  prune(now: number): void {
    this.up.prune(now);
    if (this.down !== this.up) this.down.prune(now);
  }

  /** Busy time of the busiest direction. */
  get busyMs(): number {
    return Math.max(this.up.busyMs, this.down === this.up ? 0 : this.down.busyMs);
  }
}
