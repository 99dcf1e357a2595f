import * as assert from 'assert';
import sharp from 'sharp';
import { MotionGate, Tracker, type TrackEvent } from '../../src/engine/camera';
import { groundTruth, renderGray, type Scene } from './scene';

const W = 320;
const H = 240;
const CYCLE = 150;
const MOVING = 30;

/** Where a digit is during one cycle: moving from `from` to `to` in the first 30 frames, then still. */
function leg(from: number, to: number, phase: number): number {
  return from + ((to - from) * Math.min(phase, MOVING - 1)) / (MOVING - 1);
}

/**
 * 450 frames at 10 fps, 80 % still: in each 150-frame cycle a digit moves for 30 frames and then
 * stands. A 1 walks into the right half, later walks out of the picture; then a 7 walks in.
 */
function stillScene(): Scene {
  return {
    width: W,
    height: H,
    frames: 3 * CYCLE,
    objects: [
      {
        label: '1',
        size: 64,
        at: (f) => {
          const c = Math.floor(f / CYCLE);
          const x = c === 0 ? leg(0, 200, f % CYCLE) : c === 1 ? leg(200, 330, f % CYCLE) : 330;
          return x >= W ? null : { x, y: 80 };
        },
      },
      { label: '7', size: 64, at: (f) => (f < 2 * CYCLE ? null : { x: leg(-60, 200, f % CYCLE), y: 150 }) },
    ],
  };
}

/** A frame as JPEG; `blink`: with a light blinking in the top-left corner every other frame (what a mask is for). */
function frameOf(scene: Scene, f: number, blink: boolean): Promise<Buffer> {
  const pixels = renderGray(scene, f);
  if (blink && f % 2 === 0) for (let y = 0; y < 40; y++) pixels.fill(255, y * W, y * W + 40);
  return sharp(Buffer.from(pixels), { raw: { width: W, height: H, channels: 1 } }).jpeg({ quality: 90 }).toBuffer();
}

/** The events a tracker gives for the frames passed, with the scene's exact boxes as detections. */
function trackEvents(scene: Scene, frames: number[]): Array<Pick<TrackEvent, 'type' | 'zone' | 'label' | 'trackId' | 'reason'>> {
  const tracker = new Tracker({ zones: [{ name: 'right', polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]] }] });
  const events: TrackEvent[] = [];
  for (const f of frames) {
    const detections = groundTruth(scene, f).map((t) => ({ label: t.label, score: 0.9, box: { x: t.box.x / W, y: t.box.y / H, w: t.box.w / W, h: t.box.h / H } }));
    events.push(...tracker.update(detections, { timestamp: f * 100, frame: f }));
  }
  return events.filter((e) => e.type !== 'count').map((e) => ({ type: e.type, zone: e.zone, label: e.label, trackId: e.trackId, reason: e.reason }));
}

describe('camera: motion gate', function () {
  this.timeout(120_000);

  async function gate(blink: boolean, masks?: Array<Array<[number, number]>>): Promise<{ gate: MotionGate; passed: number[]; scene: Scene }> {
    const scene = stillScene();
    const g = new MotionGate({ masks });
    const passed: number[] = [];
    for (let f = 0; f < scene.frames; f++) {
      if ((await g.check(await frameOf(scene, f, blink), f * 100)).pass) passed.push(f);
    }
    return { gate: g, passed, scene };
  }

  it('on a scene with 80 % still frames passes at least 4x fewer frames, and the tracker gives the same events', async function () {
    const { gate: g, passed, scene } = await gate(false);
    const ratio = scene.frames / passed.length;
    console.log(`      motion gate: ${scene.frames} frames, ${passed.length} passed, ${g.counts.skipped} skipped: ${ratio.toFixed(2)}x fewer`);
    assert.ok(ratio >= 4, `${ratio.toFixed(2)}x fewer frames`);
    assert.strictEqual(g.counts.passed + g.counts.skipped, scene.frames);
    // every frame where a digit moved in full view passed (a sliver at the picture's edge may not)
    for (let f = 1; f < scene.frames; f++) {
      const moved = scene.objects.some((o) => {
        const now = o.at(f);
        const before = o.at(f - 1);
        return now && before && now.x !== before.x && now.x >= 0 && now.x + o.size <= W;
      });
      if (moved) assert.ok(passed.includes(f), `moving frame ${f} passed`);
    }
    const all = trackEvents(scene, Array.from({ length: scene.frames }, (_, f) => f));
    const gated = trackEvents(scene, passed);
    assert.deepStrictEqual(
      all.map((e) => [e.type, e.label, e.reason]),
      [
        ['entered', '1', undefined],
        ['left', '1', 'lost'],
        ['entered', '7', undefined],
      ],
    );
    assert.deepStrictEqual(gated, all);
  });

  it('ignores motion inside a mask', async function () {
    const unmasked = await gate(true);
    assert.ok(unmasked.passed.length > unmasked.scene.frames * 0.9, 'a blinking light unmasked passes nearly every frame');
    const masked = await gate(true, [[[0, 0], [0.2, 0], [0.2, 0.25], [0, 0.25]]]);
    assert.ok(masked.scene.frames / masked.passed.length >= 4, `masked: ${masked.passed.length} passed`);
  });

  it('refuses bad options with what was expected', function () {
    assert.throws(() => new MotionGate({ sensitivity: 0 }), /sensitivity must be a gray-level step from 1 to 255, got 0/);
    assert.throws(() => new MotionGate({ minArea: 1.5 }), /minimum area must be a fraction from 0 to 1, got 1.5/);
  });
});
