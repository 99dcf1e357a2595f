import { strict as assert } from 'assert';
import * as path from 'path';
import sharp from 'sharp';
import cameraNode = require('../../nodes/ncs2-camera');
import trackNode = require('../../nodes/ncs2-track');
import type { NodeStatus } from '../../nodes/lib/red';
import { parseCameraSettings, parseTrackSettings } from '../../nodes/lib/camera-settings';
import { makeTestVideo, serveFrames, tempDir, videoFrames, type FrameServer } from '../camera/streams';
import { collect, helper, node, settle, statuses, useNodeRedServer, waitFor } from './support';

const TAB = 'cam-tab';

/** The test helper's load with credentials (support.ts types the two-argument form). */
const loadWithCredentials = helper.load.bind(helper) as unknown as (nodes: unknown[], flow: object[], credentials?: Record<string, unknown>) => Promise<void>;

/** What a node passes to warn() or error() (done(err) reaches Catch nodes through node.error). */
function reported(id: string, method: 'warn' | 'error'): string[] {
  const seen: string[] = [];
  node(id).on(`call:${method}`, (call: { args: [unknown] }) => seen.push(call.args[0] instanceof Error ? (call.args[0] as Error).message : String(call.args[0])));
  return seen;
}

function camera(props: Record<string, unknown>): object[] {
  return [
    { id: TAB, type: 'tab', label: 'camera' },
    { id: 'cam', type: 'ncs2-camera', z: TAB, name: 'porch', fps: 5, width: 0, quality: 5, queueSize: 1, hwaccel: false, loop: false, realtime: true, maxBackoff: 30, ffmpeg: 'ffmpeg', motion: false, sensitivity: 25, minArea: 0.3, holdFrames: 3, refresh: 5, masks: '', ...props, wires: [['out']] },
    { id: 'out', type: 'helper', z: TAB },
  ];
}

describe('ncs2-camera node (real streams through ffmpeg)', function () {
  this.timeout(60_000);
  let video: string;
  let frames: Buffer[];
  let server: FrameServer | undefined;

  before(async function () {
    video = await makeTestVideo(path.join(tempDir(), 'testsrc.avi'), 2, 10);
    frames = await videoFrames(video);
  });

  useNodeRedServer();

  afterEach(async function () {
    await server?.kill().catch(() => undefined);
    server = undefined;
  });

  it('sends every frame of a video file as a JPEG with msg.camera, and says when the file ended', async function () {
    await helper.load([cameraNode], camera({ url: video, fps: 5 }));
    const seen = statuses('cam');
    const out = collect('out');
    await waitFor(() => seen.some((s) => s.text?.startsWith('ncs2-camera.status.ended')), 'the file to end');
    await settle(100);
    // 2 s at 5 fps
    assert.ok(out.length >= 9 && out.length <= 11, `${out.length} frames`);
    for (const msg of out) {
      assert.ok(Buffer.isBuffer(msg.payload));
      assert.equal(msg.image, msg.payload, 'image is the same Buffer as payload');
      const cam = msg.camera as { id: string; frame: number; width: number; height: number; timestamp: number };
      assert.equal(cam.id, 'porch');
      assert.deepEqual([cam.width, cam.height], [320, 240]);
      assert.ok(cam.timestamp > 0);
    }
    assert.equal((await sharp(out[0].payload as Buffer).metadata()).format, 'jpeg');
    // the test helper loads no message catalogue: status words show as their keys
    assert.equal(seen[seen.length - 1].text, `ncs2-camera.status.ended (${out.length})`);
    // the newest frame, for drawing zones in the ncs2-track editor
    const snapshot = await helper.request().get('/ncs2/cameras/cam/snapshot');
    assert.equal(snapshot.status, 200);
    assert.ok(Buffer.isBuffer(snapshot.body) && (snapshot.body as Buffer).equals(out[out.length - 1].payload as Buffer), 'the snapshot is the last frame');
    const unknown = await helper.request().get('/ncs2/cameras/nope/snapshot');
    assert.equal(unknown.status, 404);
    assert.match((unknown.body as { error: string }).error, /camera nope has no frame yet/);
  });

  it('shows "ffmpeg missing" and warns once with what to do', async function () {
    await helper.load([cameraNode], camera({ url: video, ffmpeg: '/nonexistent/ffmpeg' }));
    const seen = statuses('cam');
    const warned = reported('cam', 'warn');
    await waitFor(() => seen.some((s) => s.text === 'ncs2-camera.status.ffmpegMissing'), 'the ffmpeg-missing status');
    await settle(300);
    assert.deepEqual(seen[seen.length - 1], { fill: 'red', shape: 'ring', text: 'ncs2-camera.status.ffmpegMissing' } satisfies NodeStatus);
    assert.equal(warned.length, 1);
    assert.match(warned[0], /apt-get install ffmpeg/);
  });

  it('reads an MJPEG stream with credentials; when the stream dies it shows "reconnecting in Ns", warns once, and resumes', async function () {
    server = await serveFrames(frames, 10, 'viewer:s3cret');
    await loadWithCredentials([cameraNode], camera({ url: `${server.url}/stream`, fps: 5, maxBackoff: 2 }), { cam: { username: 'viewer', password: 's3cret' } });
    const seen = statuses('cam');
    const warned = reported('cam', 'warn');
    const out = collect('out');
    await waitFor(() => out.length >= 3, 'frames from the stream', 20_000);
    await server.kill();
    await waitFor(() => seen.some((s) => /^ncs2-camera.status.reconnecting \d+s$/.test(s.text ?? '')), 'the reconnecting status');
    await settle(4000);
    assert.equal(warned.length, 1, `one warning for the lost camera, not one per attempt: ${JSON.stringify(warned)}`);
    const before = out.length;
    await server.restart();
    await waitFor(() => out.length >= before + 3, 'frames after the stream came back', 20_000);
    assert.equal(warned.length, 1);
    await waitFor(() => seen[seen.length - 1].fill === 'green', 'a green status again');
  });

  it('with motion gating sends only frames that changed and counts the still ones in the status', async function () {
    // one still picture served as a stream: after the first frame nothing moves
    server = await serveFrames([frames[0]], 10);
    await helper.load([cameraNode], camera({ url: `${server.url}/stream`, fps: 10, motion: true }));
    const seen = statuses('cam');
    const out = collect('out');
    await waitFor(() => seen.some((s) => /· [1-9]\d* ncs2-camera.status.still/.test(s.text ?? '')), 'still frames counted in the status', 20_000);
    await settle(1500);
    assert.ok(out.length <= 4, `${out.length} frames sent: the first, then none while nothing moves (the first compares with nothing)`);
    assert.ok(out.every((m) => typeof (m.motion as { changed: number }).changed === 'number'));
  });

  it('refuses settings it cannot use, in the status and the log', async function () {
    await helper.load([cameraNode], camera({ url: '', fps: 5 }));
    const cam = node('cam') as unknown as { error: { callCount: number; args: unknown[][] } };
    assert.equal(cam.error.callCount, 1);
    assert.match(String(cam.error.args[0][0]), /a camera URL, device path or video file is needed/);
  });
});

describe('ncs2-track node', function () {
  this.timeout(30_000);
  useNodeRedServer();

  const flow = (props: Record<string, unknown> = {}) => [
    { id: TAB, type: 'tab', label: 'track' },
    { id: 'track', type: 'ncs2-track', z: TAB, name: '', zones: 'right: 0.5,0 1,0 1,1 0.5,1', lines: '', labels: '', anchor: 'bottom-center', dwell: 0, minHits: 2, maxAge: 2, iouThreshold: 0.3, settleFrames: 1, filters: '', crop: true, cropPadding: 0, ...props, wires: [['events'], ['tracks']] },
    { id: 'events', type: 'helper', z: TAB },
    { id: 'tracks', type: 'helper', z: TAB },
  ];

  async function frameWithBox(x: number): Promise<Buffer> {
    const dot = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 255, g: 255, b: 255 } } }).png().toBuffer();
    return sharp({ create: { width: 200, height: 100, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .composite([{ input: dot, left: x, top: 40 }])
      .jpeg()
      .toBuffer();
  }

  it('turns detections into one entered event per object with crop and snapshot, and tracks per frame', async function () {
    await helper.load([trackNode], flow());
    const events = collect('events');
    const tracks = collect('tracks');
    const caught = reported('track', 'error');
    for (let f = 0; f < 8; f++) {
      const x = 40 + f * 10;
      const image = await frameWithBox(x);
      node('track').receive({ payload: [{ label: '7', classIndex: 7, score: 0.6 + f * 0.01, box: { x, y: 40, w: 40, h: 40 } }], image, camera: { id: 'porch', frame: f + 1, timestamp: 1000 + f * 100, width: 200, height: 100 } });
    }
    await waitFor(() => tracks.length === 8, 'eight track messages');
    assert.deepEqual(caught, []);
    const entered = events.filter((m) => (m.payload as { type: string }).type === 'entered');
    assert.equal(entered.length, 1);
    const e = entered[0];
    assert.equal(e.topic, 'porch/right/entered');
    const p = e.payload as { trackId: number; label: string; box: { x: number; w: number }; best: { score: number; box: { x: number } } };
    assert.equal(p.label, '7');
    const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a}, expected ${b}`);
    near(p.box.w, 40, 'boxes come back in pixels');
    // anchor (bottom centre) x = box.x + 20 >= 100 from box.x 80 on: frame 5
    near(p.box.x, 80, 'box x');
    near(p.best.box.x, 80, 'the best score so far is the latest');
    const crop = await sharp(e.crop as Buffer).metadata();
    assert.deepEqual([crop.format, crop.width, crop.height], ['jpeg', 40, 40]);
    assert.ok(Buffer.isBuffer(e.snapshot));
    const counts = events.filter((m) => (m.payload as { type: string }).type === 'count').map((m) => (m.payload as { count: number }).count);
    assert.deepEqual(counts, [1]);
    const last = tracks[7].payload as { tracks: Array<{ id: number; box: { x: number } }>; counts: Record<string, number> };
    assert.equal(last.tracks.length, 1);
    near(last.tracks[0].box.x, 110, 'track box x');
    assert.deepEqual(last.counts, { right: 1 });
  });

  it('reports a payload that is not detections, saying what it expects', async function () {
    await helper.load([trackNode], flow());
    const caught = reported('track', 'error');
    node('track').receive({ payload: Buffer.from([1, 2, 3]), camera: { width: 10, height: 10 } });
    node('track').receive({ payload: [{ label: '1', score: 0.9, box: { x: 1, y: 1, w: 2, h: 2 } }] });
    await waitFor(() => caught.length === 2, 'two errors');
    assert.match(caught[0], /expects msg.payload to be one frame's detections.*got a Buffer of 3 bytes/);
    assert.match(caught[1], /needs the frame size/);
  });

  it('refuses a zone it cannot read, naming it', async function () {
    await helper.load([trackNode], flow({ zones: 'door: 0.1,0.1 2,0.5 0.3,0.9' }));
    const t = node('track') as unknown as { error: { args: unknown[][] } };
    assert.match(String(t.error.args[0][0]), /zone "door" needs at least 3 points as "x,y x,y \.\.\.".*got "0.1,0.1 2,0.5 0.3,0.9"/);
    await settle(50); // the helper reports the deploy-time error call asynchronously
    const caught = reported('track', 'error');
    node('track').receive({ payload: [] });
    await waitFor(() => caught.length === 1, 'the message refused');
    assert.match(caught[0], /ncs2-track track is invalid/);
  });
});

describe('ncs2-camera and ncs2-track settings', function () {
  it('reads zones and lines as "name: x,y ..." lines or JSON, and masks and labels', function () {
    const text = parseTrackSettings({ zones: '# the drive\ndrive: 0.5,0.4 1,0.4 1,1\n\n0,0 0.2,0 0.2,0.2', lines: 'gate: 0.5,0 0.5,1', labels: 'person, car' });
    assert.deepEqual(
      text.tracker.zones!.map((z) => [z.name, z.polygon.length, z.labels]),
      [
        ['drive', 3, ['person', 'car']],
        ['zone 2', 3, ['person', 'car']],
      ],
    );
    assert.deepEqual(text.tracker.lines, [{ name: 'gate', a: [0.5, 0], b: [0.5, 1], labels: ['person', 'car'] }]);
    const json = parseTrackSettings({ zones: '[{"name": "door", "points": [[0, 0], [0.3, 0], [0.3, 1]]}]' });
    assert.deepEqual(json.tracker.zones, [{ name: 'door', polygon: [[0, 0], [0.3, 0], [0.3, 1]] }]);
    const camera = parseCameraSettings({ url: 'rtsp://cam/1', motion: true, masks: 'tree: 0,0 0.3,0 0.3,0.4', minArea: 1 }, 'porch', { username: 'u', password: 'p' });
    assert.deepEqual(camera.motion!.masks, [[[0, 0], [0.3, 0], [0.3, 0.4]]]);
    assert.equal(camera.motion!.minArea, 0.01, 'minimum area is a percentage in the dialog');
    assert.deepEqual([camera.source.username, camera.source.password, camera.source.fps], ['u', 'p', 5]);
  });

  it('refuses what it cannot use, naming the field and what arrived', function () {
    assert.throws(() => parseTrackSettings({ lines: 'gate: 0,0 0.5,0.5 1,1' }), /line "gate" needs exactly 2 points "x,y x,y", got 3/);
    assert.throws(() => parseTrackSettings({ filters: '[1]' }), /label filters must be a JSON object/);
    assert.throws(() => parseTrackSettings({ zones: '[{"name": "a"' }), /zone \(JSON\):/);
    assert.throws(() => parseCameraSettings({ url: 'http://cam/snap.jpg', input: 'snapshot', fps: 0 }, 'c', {}), /snapshot URL needs fps above 0/);
    assert.throws(() => parseCameraSettings({ url: 'x.avi', quality: 40 }, 'c', {}), /JPEG quality must be a whole number from 2 to 31, got 40/);
    assert.throws(() => parseCameraSettings({ url: 'x.avi', input: 'ftp' }, 'c', {}), /input must be auto or one of rtsp, mjpeg, snapshot, v4l2, file, got "ftp"/);
  });
});
