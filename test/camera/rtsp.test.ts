import * as assert from 'assert';
import { spawn, type ChildProcess } from 'child_process';
import * as net from 'net';
import * as path from 'path';
import { FrameSource, type CameraFrame, type SourceStatus } from '../../src/engine/camera';
import { waitFor } from './streams';

/** Debian's own Python: python3-gi and the GStreamer RTSP server bindings are installed for it. */
const PYTHON = '/usr/bin/python3';
const SERVER = path.resolve(__dirname, '../../../test/camera/rtsp-server.py');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts GStreamer's RTSP server on `port`; resolves once it listens. */
function startRtspServer(port: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SERVER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.on('data', (d) => {
      if (String(d).includes('ready')) resolve(child);
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`the RTSP server exited (${code}) before it was ready: ${stderr}`)));
  });
}

function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

describe('camera: RTSP from a real RTSP server (GStreamer)', function () {
  this.timeout(90_000);
  let server: ChildProcess | undefined;
  let source: FrameSource | undefined;

  afterEach(async function () {
    await source?.stop();
    if (server) await stopServer(server);
  });

  it('reads RTSP at the fps cap, and reconnects after the server was killed and came back', async function () {
    const port = await freePort();
    server = await startRtspServer(port);
    source = new FrameSource({ id: 'rtsp', url: `rtsp://127.0.0.1:${port}/test`, fps: 5, initialBackoffMs: 300, maxBackoffMs: 1200, stallTimeoutMs: 3000 });
    const got: CameraFrame[] = [];
    const statuses: SourceStatus[] = [];
    source.on('status', (s: SourceStatus) => statuses.push(s));
    await source.start((f) => void got.push(f));
    await waitFor(() => got.length >= 5, 30_000, 'frames over RTSP');
    // past the start-up burst (ffmpeg probes the stream first), count frames for 3 s: 10 fps served, 5 asked
    const start = got.length;
    await new Promise((r) => setTimeout(r, 3000));
    const inThreeSeconds = got.length - start;
    assert.ok(inThreeSeconds >= 11 && inThreeSeconds <= 19, `${inThreeSeconds} frames in 3 s at an fps cap of 5`);
    assert.deepStrictEqual([got[0].camera.width, got[0].camera.height], [320, 240]);
    await stopServer(server);
    await waitFor(() => source!.status.state === 'reconnecting', 10_000, 'the source to notice the server is gone');
    const before = got.length;
    server = await startRtspServer(port);
    await waitFor(() => got.length >= before + 5, 30_000, 'frames after the server came back');
    const reconnects = statuses.filter((s) => s.state === 'reconnecting').length;
    assert.ok(reconnects >= 1 && reconnects <= 6, `${reconnects} reconnect attempts`);
  });
});
