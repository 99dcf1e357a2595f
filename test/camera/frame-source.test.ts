import * as assert from 'assert';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import sharp from 'sharp';
import { FrameSource, FfmpegMissingError, JpegSplitter, jpegSize, ffmpegArguments, redactUrl, type CameraFrame, type SourceStatus } from '../../src/engine/camera';
import { makeTestVideo, serveFrames, tempDir, videoFrames, waitFor, type FrameServer } from './streams';

describe('camera: JPEG stream splitting', function () {
  it('splits concatenated JPEGs fed in chunks of any size, markers straddling chunks included', async function () {
    const jpegs = await Promise.all(
      [10, 120, 240].map((g) => sharp({ create: { width: 40 + g / 10, height: 30, channels: 3, background: { r: g, g: 255 - g, b: 7 } } }).jpeg().toBuffer()),
    );
    const stream = Buffer.concat(jpegs);
    for (const chunkSize of [1, 2, 3, 7, 64, stream.length]) {
      const splitter = new JpegSplitter();
      const out: Buffer[] = [];
      for (let i = 0; i < stream.length; i += chunkSize) out.push(...splitter.push(stream.subarray(i, i + chunkSize)));
      assert.strictEqual(out.length, 3, `chunks of ${chunkSize}`);
      out.forEach((f, i) => assert.ok(f.equals(jpegs[i]), `frame ${i} with chunks of ${chunkSize}`));
    }
    assert.deepStrictEqual(jpegSize(jpegs[2]), { width: 64, height: 30 });
    assert.strictEqual(jpegSize(Buffer.from('not a jpeg')), null);
  });

  it('drops a frame that outgrows the size limit instead of holding it', function () {
    const splitter = new JpegSplitter(100);
    assert.deepStrictEqual(splitter.push(Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.alloc(200, 1)])), []);
    assert.deepStrictEqual(splitter.push(Buffer.from([0xff, 0xd9])), []);
  });
});

describe('camera: frame source over ffmpeg (real streams)', function () {
  this.timeout(60_000);
  let dir: string;
  let video: string;
  let frames: Buffer[];
  const sources: FrameSource[] = [];
  const servers: FrameServer[] = [];

  before(async function () {
    dir = tempDir();
    video = await makeTestVideo(path.join(dir, 'testsrc.avi'), 3, 10);
    frames = await videoFrames(video);
  });

  afterEach(async function () {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
    await Promise.all(servers.splice(0).map((s) => s.kill().catch(() => undefined)));
  });

  function source(options: ConstructorParameters<typeof FrameSource>[0]): { source: FrameSource; got: CameraFrame[]; statuses: SourceStatus[] } {
    const s = new FrameSource(options);
    sources.push(s);
    const statuses: SourceStatus[] = [];
    s.on('status', (st: SourceStatus) => statuses.push(st));
    return { source: s, got: [], statuses };
  }

  it('reads a video file at the fps cap, numbers and sizes the frames, and ends', async function () {
    assert.strictEqual(frames.length, 30);
    const { source: s, got, statuses } = source({ id: 'file', url: video, fps: 5, realtime: false, queueSize: 2 });
    await s.start((f) => void got.push(f));
    await waitFor(() => s.status.state === 'ended', 20_000, 'the file to end');
    // 3 s at 5 fps; ffmpeg's fps filter may keep one frame more or less at the ends. Frames that
    // came while two waited are dropped (drop-oldest): on a loaded host that can be one or two.
    assert.ok(s.counts.received >= 14 && s.counts.received <= 16, `${s.counts.received} frames from ffmpeg`);
    assert.strictEqual(s.counts.received, got.length + s.counts.dropped);
    assert.ok(s.counts.dropped <= 2, `${s.counts.dropped} dropped with an instant handler`);
    for (const f of got) {
      assert.strictEqual(f.jpeg[0], 0xff);
      assert.strictEqual(f.camera.id, 'file');
      assert.deepStrictEqual([f.camera.width, f.camera.height], [320, 240]);
    }
    const numbers = got.map((f) => f.camera.frame);
    assert.deepStrictEqual(numbers, [...numbers].sort((a, b) => a - b));
    assert.deepStrictEqual(
      statuses.map((st) => st.state),
      ['connecting', 'connected', 'ended'],
    );
    const decoded = await sharp(got[0].jpeg).metadata();
    assert.strictEqual(decoded.format, 'jpeg');
  });

  it('drops the oldest frames for a slow handler and never runs it twice at once', async function () {
    const { source: s, got } = source({ id: 'slow', url: video, fps: 0, realtime: false, queueSize: 1 });
    let running = 0;
    let overlap = false;
    await s.start(async (f) => {
      overlap ||= running > 0;
      running++;
      got.push(f);
      await new Promise((r) => setTimeout(r, 150));
      running--;
    });
    await waitFor(() => s.status.state === 'ended' && running === 0, 20_000, 'the file to end');
    await new Promise((r) => setTimeout(r, 400));
    assert.strictEqual(overlap, false);
    assert.ok(s.counts.dropped > 0, 'a 150 ms handler cannot keep up with a file read at full speed');
    assert.strictEqual(s.counts.received, s.counts.delivered + s.counts.dropped);
    assert.strictEqual(got.length, s.counts.delivered);
    // the newest frame is never the one dropped
    assert.strictEqual(got[got.length - 1].camera.frame, s.counts.received);
  });

  it('reads MJPEG over HTTP, reconnects with backoff when the stream dies, without a status flood', async function () {
    const server = await serveFrames(frames, 10);
    servers.push(server);
    const { source: s, got, statuses } = source({ id: 'http', url: `${server.url}/stream`, fps: 5, initialBackoffMs: 300, maxBackoffMs: 1200, stallTimeoutMs: 3000 });
    await s.start((f) => void got.push(f));
    await waitFor(() => got.length >= 5, 15_000, 'frames from the MJPEG stream');
    await server.kill();
    const before = got.length;
    await new Promise((r) => setTimeout(r, 2500));
    const reconnecting = statuses.filter((st): st is Extract<SourceStatus, { state: 'reconnecting' }> => st.state === 'reconnecting');
    assert.ok(reconnecting.length >= 2, `retried ${reconnecting.length} times while the camera was away`);
    // 300, 600, 1200 ms...: at most about log2 attempts in 2.5 s, not one per frame period
    assert.ok(reconnecting.length <= 4, `${reconnecting.length} reconnect attempts in 2.5 s`);
    const delays = reconnecting.map((st) => st.inMs);
    assert.deepStrictEqual(delays, [...delays].sort((a, b) => a - b));
    assert.ok(delays.every((d) => d <= 1200));
    await server.restart();
    await waitFor(() => got.length >= before + 5, 15_000, 'frames after the stream came back');
    assert.strictEqual(s.status.state, 'connected');
    assert.ok(got.slice(before).every((f) => f.camera.width === 320));
  });

  it('treats a stream that stops sending (connection still open) as lost after the stall timeout', async function () {
    const hanging = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'multipart/x-mixed-replace;boundary=x' });
      res.write('--x\r\n');
    });
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (hanging.address() as AddressInfo).port;
      const { source: s, statuses } = source({ id: 'stall', url: `http://127.0.0.1:${port}/`, stallTimeoutMs: 1000, initialBackoffMs: 5000 });
      const started = Date.now();
      await s.start(() => undefined);
      await waitFor(() => s.status.state === 'reconnecting', 10_000, 'the stall to count as a lost connection');
      const lost = statuses.find((st): st is Extract<SourceStatus, { state: 'reconnecting' }> => st.state === 'reconnecting')!;
      console.log(`      stalled stream: lost after ${Date.now() - started} ms (${lost.reason})`);
      assert.ok(Date.now() - started < 6000);
    } finally {
      hanging.closeAllConnections();
      hanging.close();
    }
  });

  it('passes user and password to an MJPEG stream that needs them, and redacts them for display', async function () {
    const server = await serveFrames(frames, 10, 'cam user:p@ss/word');
    servers.push(server);
    const { source: s, got } = source({ id: 'auth', url: `${server.url}/stream`, username: 'cam user', password: 'p@ss/word', fps: 5 });
    assert.ok(ffmpegArguments({ id: 'x', url: `${server.url}/stream`, username: 'cam user', password: 'p@ss/word' }).includes(`http://cam%20user:p%40ss%2Fword@127.0.0.1:${server.port}/stream`));
    await s.start((f) => void got.push(f));
    await waitFor(() => got.length >= 2, 15_000, 'frames from the protected stream');
    assert.strictEqual(redactUrl('rtsp://u:secret@cam/x'), 'rtsp://***@cam/x');
  });

  it('fetches a snapshot URL at the fps', async function () {
    const server = await serveFrames(frames, 10);
    servers.push(server);
    const { source: s, got } = source({ id: 'snap', url: `${server.url}/snapshot`, kind: 'snapshot', fps: 10 });
    const started = Date.now();
    await s.start((f) => void got.push(f));
    await waitFor(() => got.length >= 10, 10_000, '10 snapshots');
    const elapsed = Date.now() - started;
    // ten fetches 100 ms apart take about 0.9 s; far less means the fps is not applied
    assert.ok(elapsed >= 850, `10 snapshots in ${elapsed} ms`);
    assert.deepStrictEqual([got[0].camera.width, got[0].camera.height], [320, 240]);
  });

  it('decodes with -hwaccel auto when asked (software fallback on a machine without a decoder)', async function () {
    const options = { id: 'hw', url: video, fps: 5, realtime: false, hardwareDecode: true, queueSize: 2 };
    assert.deepStrictEqual(ffmpegArguments(options).slice(4, 6), ['-hwaccel', 'auto']);
    const { source: s, got } = source(options);
    await s.start((f) => void got.push(f));
    await waitFor(() => s.status.state === 'ended', 20_000, 'the file to end');
    assert.ok(got.length >= 10, `${got.length} frames`);
  });

  it('builds the input options each source kind needs', function () {
    const args = (url: string, extra = {}) => ffmpegArguments({ id: 'x', url, ...extra }).join(' ');
    assert.match(args('/dev/video0'), /-f v4l2 -i \/dev\/video0/);
    assert.match(args('rtsp://cam/1'), /-rtsp_transport tcp -timeout 10000000 -i rtsp:\/\/cam\/1/);
    assert.match(args('http://cam/mjpeg'), /-rw_timeout 10000000 -i http:\/\/cam\/mjpeg/);
    assert.match(args('clip.mp4', { loop: true, fps: 2, width: 640 }), /-re -stream_loop -1 -i clip.mp4 .*-vf fps=2,scale=640:-2/);
  });

  it('says ffmpeg is missing, with what to do, instead of retrying', async function () {
    const { source: s, statuses } = source({ id: 'none', url: video, ffmpegPath: path.join(dir, 'no-such-ffmpeg') });
    await assert.rejects(s.start(() => undefined), (err: Error) => err instanceof FfmpegMissingError && /apt-get install ffmpeg/.test(err.message));
    assert.deepStrictEqual(
      statuses.map((st) => st.state),
      ['ffmpeg-missing'],
    );
  });
});
