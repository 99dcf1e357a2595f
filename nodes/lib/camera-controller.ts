/**
 * What an ncs2-camera node does, without Node-RED: runs a frame source, gates frames on motion
 * when asked, sends one message per frame, and keeps a short status line and the log quiet: one
 * warning when the camera is lost, one line when it is back, however many attempts lie between.
 */
import { FrameSource, MotionGate, redactUrl, type CameraFrame, type SourceStatus } from '../../src/engine';
import type { CameraSettings } from './camera-settings';
import type { NodeMessage, NodeStatus } from './red';

export interface CameraWords {
  connecting: string;
  reconnecting: string;
  ffmpegMissing: string;
  ended: string;
  still: string;
  dropped: string;
}

export interface CameraControllerOptions {
  settings: CameraSettings;
  send(msg: NodeMessage): void;
  status(status: NodeStatus): void;
  warn(message: string): void;
  log(message: string): void;
  /** Reports a failure that is not the camera's (motion check of a broken frame). */
  error(err: Error): void;
  words: CameraWords;
  /** Status refresh period (ms). Default 1000. */
  statusIntervalMs?: number;
}

export class CameraController {
  private readonly source: FrameSource;
  private readonly gate: MotionGate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private shown = '';
  private sent = 0;
  private sentAtLastTick = 0;
  private lastTick = Date.now();
  private rate = 0;
  /** When the current reconnect wait ends (ms since the epoch). */
  private retryAt = 0;
  private lostSince: number | undefined;
  private closed = false;
  private latest: Buffer | undefined;

  constructor(private readonly options: CameraControllerOptions) {
    this.source = new FrameSource(options.settings.source);
    this.gate = options.settings.motion ? new MotionGate(options.settings.motion) : undefined;
    this.source.on('status', (s: SourceStatus) => this.sourceStatus(s));
    this.source.on('handler-error', (err: Error) => options.error(err));
  }

  /** Frames sent, frames skipped as still, frames dropped for a busy flow, connections lost. */
  counts(): { sent: number; still: number; dropped: number; disconnects: number; received: number } {
    return { sent: this.sent, still: this.gate?.counts.skipped ?? 0, dropped: this.source.counts.dropped, disconnects: this.source.counts.disconnects, received: this.source.counts.received };
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.statusIntervalMs ?? 1000);
    this.timer.unref();
    // a missing ffmpeg already shows in the status and the log (sourceStatus); nothing else to do
    this.source.start((frame) => this.frame(frame)).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.source.stop();
  }

  /** The newest frame received (sent or not): what the track node's editor draws zones over. */
  get latestFrame(): Buffer | undefined {
    return this.latest;
  }

  private async frame(frame: CameraFrame): Promise<void> {
    this.latest = frame.jpeg;
    let motion: { changed: number } | undefined;
    if (this.gate) {
      const result = await this.gate.check(frame.jpeg, frame.camera.timestamp);
      // the node may have closed while sharp compared the frame
      if (!result.pass || this.closed) return;
      motion = { changed: result.changed };
    }
    this.sent++;
    // payload and image are the same Buffer (shared, not copied): image survives inference, which replaces payload
    const msg: NodeMessage = { topic: this.options.settings.source.id, payload: frame.jpeg, image: frame.jpeg, camera: frame.camera };
    if (motion) msg.motion = motion;
    this.options.send(msg);
  }

  private sourceStatus(s: SourceStatus): void {
    const where = redactUrl(this.options.settings.source.url);
    if (s.state === 'reconnecting') {
      this.retryAt = Date.now() + s.inMs;
      if (this.lostSince === undefined) {
        this.lostSince = Date.now();
        this.options.warn(`camera ${where}: ${s.reason}; reconnecting with backoff (status shows the next attempt)`);
      }
    } else if (s.state === 'connected' && this.lostSince !== undefined) {
      this.options.log(`camera ${where}: connected again after ${((Date.now() - this.lostSince) / 1000).toFixed(1)} s`);
      this.lostSince = undefined;
    } else if (s.state === 'ffmpeg-missing') {
      this.options.warn(s.message);
    }
    this.tick();
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastTick >= 900) {
      this.rate = ((this.sent - this.sentAtLastTick) * 1000) / (now - this.lastTick);
      this.sentAtLastTick = this.sent;
      this.lastTick = now;
    }
    const status = this.render(this.source.status);
    const key = JSON.stringify(status);
    if (key === this.shown) return;
    this.shown = key;
    this.options.status(status);
  }

  private render(s: SourceStatus): NodeStatus {
    const w = this.options.words;
    switch (s.state) {
      case 'connecting':
        return { fill: 'yellow', shape: 'ring', text: w.connecting };
      case 'reconnecting':
        return { fill: 'yellow', shape: 'ring', text: `${w.reconnecting} ${Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000))}s` };
      case 'ffmpeg-missing':
        return { fill: 'red', shape: 'ring', text: w.ffmpegMissing };
      case 'ended':
        return { fill: 'grey', shape: 'dot', text: `${w.ended} (${this.sent})` };
      case 'stopped':
        return {};
      case 'connected': {
        const c = this.counts();
        const parts = [`${this.rate.toFixed(1)} fps`];
        if (this.gate) parts.push(`${c.still} ${w.still}`);
        if (c.dropped) parts.push(`${c.dropped} ${w.dropped}`);
        return { fill: 'green', shape: 'dot', text: parts.join(' · ') };
      }
    }
  }
}
