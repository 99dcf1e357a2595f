/**
 * Real streams for the camera tests: synthetic videos made by ffmpeg, and a tiny HTTP server that
 * serves JPEG frames as an MJPEG stream (multipart/x-mixed-replace) or as a snapshot URL.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { JpegSplitter } from '../../src/engine/camera';

const run = promisify(execFile);

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-camera-'));
}

/** ffmpeg's testsrc pattern (a moving, changing test card) as an MJPEG AVI file. */
export async function makeTestVideo(file: string, seconds: number, fps = 10, size = '320x240'): Promise<string> {
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `testsrc=size=${size}:rate=${fps}:duration=${seconds}`, '-c:v', 'mjpeg', '-q:v', '5', file]);
  return file;
}

/** Every frame of a video as a JPEG Buffer, re-encoded by ffmpeg. */
export async function videoFrames(file: string): Promise<Buffer[]> {
  const { stdout } = await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', file, '-c:v', 'mjpeg', '-q:v', '5', '-f', 'image2pipe', 'pipe:1'], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
  return new JpegSplitter().push(stdout);
}

export interface FrameServer {
  url: string;
  port: number;
  /** Requests answered so far. */
  requests: number;
  /** Stops serving and cuts every open connection (a camera going away). */
  kill(): Promise<void>;
  /** Serves again on the same port. */
  restart(): Promise<void>;
}

/**
 * Serves `frames` in a loop at `fps`: /stream as multipart/x-mixed-replace (MJPEG over HTTP),
 * /snapshot as the current frame per GET. `auth`: "user:password" required as basic auth.
 */
export async function serveFrames(frames: Buffer[], fps: number, auth?: string): Promise<FrameServer> {
  const boundary = 'ncs2frame';
  const sockets = new Set<import('net').Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let index = 0;
  const state = { requests: 0 };
  const handler: http.RequestListener = (req, res) => {
    state.requests++;
    if (auth && req.headers.authorization !== 'Basic ' + Buffer.from(auth).toString('base64')) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="camera"' }).end();
      return;
    }
    if (req.url?.startsWith('/snapshot')) {
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end(frames[index++ % frames.length]);
      return;
    }
    res.writeHead(200, { 'content-type': `multipart/x-mixed-replace;boundary=${boundary}`, 'cache-control': 'no-cache' });
    const timer = setInterval(() => {
      const jpeg = frames[index++ % frames.length];
      res.write(`--${boundary}\r\ncontent-type: image/jpeg\r\ncontent-length: ${jpeg.length}\r\n\r\n`);
      res.write(jpeg);
      res.write('\r\n');
    }, 1000 / fps);
    timers.add(timer);
    res.on('close', () => {
      clearInterval(timer);
      timers.delete(timer);
    });
  };
  let server = http.createServer(handler);
  const listen = (port: number) =>
    new Promise<number>((resolve) => {
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
  const port = await listen(0);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() {
      return state.requests;
    },
    async kill() {
      for (const t of timers) clearInterval(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    async restart() {
      server = http.createServer(handler);
      await listen(port);
    },
  };
}

/** Resolves when `predicate` holds, polling every 20 ms; rejects after `ms`. */
export async function waitFor(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
