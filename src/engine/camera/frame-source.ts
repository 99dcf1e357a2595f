/**
 * Camera frames from the system's ffmpeg: RTSP, HTTP(S) MJPEG, a V4L2 device or a video file are
 * decoded by an ffmpeg child process that re-encodes them as MJPEG on its stdout at a capped rate;
 * a snapshot URL is fetched (HTTP GET of one JPEG) at that rate without ffmpeg.
 *
 * Frames go to one handler at a time. While it is busy at most `queueSize` frames wait; a newer
 * frame pushes out the oldest (counted in `counts.dropped`), so a slow flow sees recent frames and
 * memory stays bounded. A lost connection is retried with exponential backoff, reported through
 * 'status' events (not errors), so a camera that is down does not flood a log.
 */
import { spawn, execFile, type ChildProcess } from 'child_process';
import { EventEmitter } from 'events';
import { EngineError } from '../errors';
import { JpegSplitter, jpegSize } from './jpeg-stream';

export type CameraInputKind = 'rtsp' | 'mjpeg' | 'snapshot' | 'v4l2' | 'file';

export interface FrameSourceOptions {
  /** Names the camera on every frame (msg.camera.id). */
  id: string;
  /** rtsp://, http(s):// (MJPEG stream or snapshot), a V4L2 device path (/dev/video0) or a video file path. */
  url: string;
  /** Default: from the URL (rtsp:// is rtsp, http(s):// is mjpeg, /dev/video* is v4l2, anything else a file). */
  kind?: CameraInputKind;
  username?: string;
  password?: string;
  /** Most frames per second sent on; 0 keeps the source's rate (not allowed for snapshot). Default 5. */
  fps?: number;
  /** Scale frames to this width (height keeps the aspect ratio); 0 keeps the source size. Default 0. */
  width?: number;
  /** ffmpeg MJPEG quality, 2 (best) to 31. Default 5. */
  quality?: number;
  /** Ask ffmpeg for hardware decoding (`-hwaccel auto`: it falls back to software when none works). Default false. */
  hardwareDecode?: boolean;
  /** RTSP transport. Default tcp (no lost packets, so no torn frames). */
  rtspTransport?: 'tcp' | 'udp';
  /** File: start again at the end instead of ending. Default false. */
  loop?: boolean;
  /** File: read at the file's own frame rate (ffmpeg -re) rather than as fast as it decodes. Default true. */
  realtime?: boolean;
  /** Frames held while the handler is busy (1 or 2); the oldest is dropped for a newer one. Default 1. */
  queueSize?: number;
  /** First wait before reconnecting (ms), doubled per failed attempt up to maxBackoffMs. Default 1000. */
  initialBackoffMs?: number;
  /** Longest wait between reconnect attempts (ms). Default 30000. */
  maxBackoffMs?: number;
  /** No data for this long (ms) counts as a lost connection. Default 10000. */
  stallTimeoutMs?: number;
  /** The ffmpeg executable. Default 'ffmpeg' (found on PATH). */
  ffmpegPath?: string;
}

export interface CameraInfo {
  id: string;
  /** Frame number since the source started, from 1, counting every frame received (dropped ones too). */
  frame: number;
  /** When the frame arrived (ms since the epoch). */
  timestamp: number;
  width: number;
  height: number;
}

export interface CameraFrame {
  jpeg: Buffer;
  camera: CameraInfo;
}

export type SourceStatus =
  | { state: 'connecting'; attempt: number }
  | { state: 'connected' }
  | { state: 'reconnecting'; inMs: number; attempt: number; reason: string }
  | { state: 'ffmpeg-missing'; message: string }
  | { state: 'ended' }
  | { state: 'stopped' };

export interface FrameSourceCounts {
  /** Frames decoded from the source. */
  received: number;
  /** Frames handed to the handler. */
  delivered: number;
  /** Frames pushed out of the queue by newer ones while the handler was busy. */
  dropped: number;
  /** Connections lost (each followed by a reconnect attempt). */
  disconnects: number;
}

export type FrameHandler = (frame: CameraFrame) => Promise<void> | void;

/** ffmpeg is not installed or not runnable at the configured path. */
export class FfmpegMissingError extends EngineError {
  constructor(message: string) {
    super(message, 'FFMPEG_MISSING');
  }
}

/** Resolves with ffmpeg's version line, or rejects with FfmpegMissingError saying how to install it. */
export function checkFfmpeg(ffmpegPath = 'ffmpeg'): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ffmpegPath, ['-hide_banner', '-version'], { timeout: 10_000 }, (err, stdout) => {
      if (err) {
        reject(
          new FfmpegMissingError(
            `ffmpeg is needed to read camera streams but running "${ffmpegPath} -version" failed (${(err as NodeJS.ErrnoException).code ?? err.message}); ` +
              'install it (Debian/Ubuntu: apt-get install ffmpeg) or set the path to the ffmpeg executable',
          ),
        );
        return;
      }
      resolve(String(stdout).split('\n')[0]);
    });
  });
}

/** The input kind a URL or path implies. */
export function inputKindOf(url: string): CameraInputKind {
  if (/^rtsps?:\/\//i.test(url)) return 'rtsp';
  if (/^https?:\/\//i.test(url)) return 'mjpeg';
  if (/^\/dev\/video\d+$/.test(url)) return 'v4l2';
  return 'file';
}

/** The URL with user and password filled in (URL encoding them), for the protocols that carry them in the URL. */
export function urlWithCredentials(url: string, username?: string, password?: string): string {
  if (!username || !/^(rtsps?|https?):\/\//i.test(url)) return url;
  const parsed = new URL(url);
  parsed.username = username;
  if (password) parsed.password = password;
  return parsed.toString();
}

/** The URL without user and password, for logs and status. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1***@');
}

/** ffmpeg's arguments for the options (exported so tests and users can see the exact command line). */
export function ffmpegArguments(o: FrameSourceOptions): string[] {
  const kind = o.kind ?? inputKindOf(o.url);
  const stallUs = String((o.stallTimeoutMs ?? 10_000) * 1000);
  const args = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
  if (o.hardwareDecode) args.push('-hwaccel', 'auto');
  if (kind === 'rtsp') args.push('-rtsp_transport', o.rtspTransport ?? 'tcp', '-timeout', stallUs);
  else if (kind === 'mjpeg') args.push('-rw_timeout', stallUs);
  else if (kind === 'v4l2') args.push('-f', 'v4l2');
  else if (kind === 'file') {
    if (o.realtime ?? true) args.push('-re');
    if (o.loop) args.push('-stream_loop', '-1');
  }
  args.push('-i', urlWithCredentials(o.url, o.username, o.password), '-an', '-sn', '-dn');
  const filters: string[] = [];
  if (o.fps) filters.push(`fps=${o.fps}`);
  if (o.width) filters.push(`scale=${o.width}:-2`);
  if (filters.length) args.push('-vf', filters.join(','));
  args.push('-c:v', 'mjpeg', '-q:v', String(o.quality ?? 5), '-f', 'image2pipe', 'pipe:1');
  return args;
}

function checkOptions(o: FrameSourceOptions): void {
  const bad = (what: string, value: unknown) => new EngineError(`camera ${o.id}: ${what}, got ${JSON.stringify(value)}`, 'CONFIG_INVALID');
  if (typeof o.url !== 'string' || o.url.trim() === '') throw bad('a URL, device path or file path is needed', o.url);
  const kind = o.kind ?? inputKindOf(o.url);
  if (!['rtsp', 'mjpeg', 'snapshot', 'v4l2', 'file'].includes(kind)) throw bad('input must be rtsp, mjpeg, snapshot, v4l2 or file', kind);
  if (o.fps !== undefined && !(o.fps >= 0 && o.fps <= 120)) throw bad('fps must be from 0 (source rate) to 120', o.fps);
  if (kind === 'snapshot' && !(o.fps! > 0 || o.fps === undefined)) throw bad('a snapshot URL needs an fps above 0 (how often to fetch it)', o.fps);
  if (o.width !== undefined && !(Number.isInteger(o.width) && o.width >= 0)) throw bad('width must be a whole number of pixels (0 keeps the size)', o.width);
  if (o.quality !== undefined && !(Number.isInteger(o.quality) && o.quality >= 2 && o.quality <= 31)) throw bad('quality must be a whole number from 2 to 31', o.quality);
  if (o.queueSize !== undefined && ![1, 2].includes(o.queueSize)) throw bad('queue size must be 1 or 2 frames', o.queueSize);
}

/** The last line ffmpeg wrote to stderr: usually why the connection failed. */
function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1]?.trim() || '';
}

export class FrameSource extends EventEmitter {
  readonly counts: FrameSourceCounts = { received: 0, delivered: 0, dropped: 0, disconnects: 0 };
  private readonly options: FrameSourceOptions;
  private readonly kind: CameraInputKind;
  private readonly queue: CameraFrame[] = [];
  private handler: FrameHandler | undefined;
  private busy = false;
  private running = false;
  private child: ChildProcess | undefined;
  private childExited: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private snapshotAbort: AbortController | undefined;
  /** Failed connection attempts since the last frame. */
  private attempt = 0;
  private connected = false;
  private lastStatus: SourceStatus = { state: 'stopped' };

  constructor(options: FrameSourceOptions) {
    super();
    checkOptions(options);
    this.options = options;
    this.kind = options.kind ?? inputKindOf(options.url);
  }

  get status(): SourceStatus {
    return this.lastStatus;
  }

  /** Starts reading; frames go to `handler`, one at a time. Rejects only when ffmpeg is missing. */
  async start(handler: FrameHandler): Promise<void> {
    if (this.running) throw new EngineError(`camera ${this.options.id} is already started`, 'CONFIG_INVALID');
    this.handler = handler;
    this.running = true;
    if (this.kind !== 'snapshot') {
      try {
        await checkFfmpeg(this.options.ffmpegPath);
      } catch (err) {
        this.running = false;
        this.setStatus({ state: 'ffmpeg-missing', message: (err as Error).message });
        throw err;
      }
    }
    if (!this.running) return; // stopped while checking
    this.connect();
  }

  /** Stops reading and ends ffmpeg; resolves once the child process has exited. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stallTimer);
    clearTimeout(this.snapshotTimer);
    this.snapshotAbort?.abort();
    this.queue.length = 0;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const killer = setTimeout(() => child.kill('SIGKILL'), 2000);
      child.kill('SIGTERM');
      await this.childExited;
      clearTimeout(killer);
    }
    this.setStatus({ state: 'stopped' });
  }

  private setStatus(status: SourceStatus): void {
    this.lastStatus = status;
    this.emit('status', status);
  }

  private connect(): void {
    if (!this.running) return;
    this.connected = false;
    this.setStatus({ state: 'connecting', attempt: this.attempt + 1 });
    if (this.kind === 'snapshot') this.pollSnapshot();
    else this.spawnFfmpeg();
  }

  private spawnFfmpeg(): void {
    const splitter = new JpegSplitter();
    const child = spawn(this.options.ffmpegPath ?? 'ffmpeg', ffmpegArguments(this.options), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    const onStall = (ms: number) => {
      stderr += `\nno data from the camera for ${ms} ms`;
      child.kill('SIGKILL');
    };
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4096);
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      this.armStallTimer(onStall);
      for (const jpeg of splitter.push(chunk)) this.received(jpeg);
    });
    this.armStallTimer(onStall);
    this.childExited = new Promise((resolve) => {
      child.on('error', (err) => {
        stderr += `\n${err.message}`;
      });
      child.on('close', (code, signal) => {
        clearTimeout(this.stallTimer);
        if (this.child === child) this.child = undefined;
        resolve();
        if (!this.running) return;
        if (this.kind === 'file' && !this.options.loop && code === 0) {
          this.setStatus({ state: 'ended' });
          return;
        }
        const why = lastLine(stderr) || (signal ? `ffmpeg ended by ${signal}` : `ffmpeg exited with code ${code}`);
        this.lost(why);
      });
    });
  }

  /** Restarts the wait for data; `onStall` runs when none came within the stall timeout. */
  private armStallTimer(onStall: (ms: number) => void): void {
    clearTimeout(this.stallTimer);
    const ms = this.options.stallTimeoutMs ?? 10_000;
    this.stallTimer = setTimeout(() => onStall(ms), ms);
  }

  private pollSnapshot(): void {
    const period = 1000 / (this.options.fps || 5);
    const headers: Record<string, string> = {};
    if (this.options.username) headers.authorization = 'Basic ' + Buffer.from(`${this.options.username}:${this.options.password ?? ''}`).toString('base64');
    const fetchOne = async () => {
      if (!this.running) return;
      const started = Date.now();
      this.snapshotAbort = new AbortController();
      const timeout = setTimeout(() => this.snapshotAbort?.abort(), this.options.stallTimeoutMs ?? 10_000);
      try {
        const res = await fetch(this.options.url, { headers, signal: this.snapshotAbort.signal });
        if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText} from the snapshot URL`);
        const body = Buffer.from(await res.arrayBuffer());
        if (body[0] !== 0xff || body[1] !== 0xd8) throw new Error(`the snapshot URL answered ${res.headers.get('content-type') ?? 'no content type'}, not a JPEG`);
        this.received(body);
      } catch (err) {
        clearTimeout(timeout);
        if (this.running) this.lost(err instanceof Error && err.name === 'AbortError' ? `no answer from the snapshot URL within ${this.options.stallTimeoutMs ?? 10_000} ms` : (err as Error).message);
        return;
      }
      clearTimeout(timeout);
      if (this.running) this.snapshotTimer = setTimeout(() => void fetchOne(), Math.max(0, period - (Date.now() - started)));
    };
    void fetchOne();
  }

  private lost(reason: string): void {
    this.counts.disconnects++;
    this.attempt++;
    const initial = this.options.initialBackoffMs ?? 1000;
    const inMs = Math.min(this.options.maxBackoffMs ?? 30_000, initial * 2 ** (this.attempt - 1));
    this.setStatus({ state: 'reconnecting', inMs, attempt: this.attempt, reason: redactUrl(reason) });
    this.retryTimer = setTimeout(() => this.connect(), inMs);
  }

  private received(jpeg: Buffer): void {
    if (!this.running) return;
    if (!this.connected) {
      this.connected = true;
      this.attempt = 0;
      this.setStatus({ state: 'connected' });
    }
    this.counts.received++;
    const size = jpegSize(jpeg) ?? { width: 0, height: 0 };
    const frame: CameraFrame = { jpeg, camera: { id: this.options.id, frame: this.counts.received, timestamp: Date.now(), ...size } };
    this.queue.push(frame);
    if (this.queue.length > (this.options.queueSize ?? 1)) {
      this.queue.shift();
      this.counts.dropped++;
    }
    void this.deliver();
  }

  private async deliver(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      let frame: CameraFrame | undefined;
      while (this.running && (frame = this.queue.shift())) {
        this.counts.delivered++;
        try {
          await this.handler!(frame);
        } catch (err) {
          // the handler's own failure must not stop the camera; its owner hears about it
          this.emit('handler-error', err);
        }
      }
    } finally {
      this.busy = false;
    }
  }
}
