import * as assert from 'assert';
import { Tracker, type NormBox, type TrackEvent, type TrackerDetection, type TrackerOptions } from '../../src/engine/camera';
import { mulberry32 } from '../../src/engine/graph/builder';
import { bounce, groundTruth, type Scene } from './scene';

const W = 320;
const H = 240;
const RIGHT_HALF = { name: 'right', polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]] as Array<[number, number]> };

function norm(b: { x: number; y: number; w: number; h: number }): NormBox {
  return { x: b.x / W, y: b.y / H, w: b.w / W, h: b.h / H };
}

function iouOf(a: NormBox, b: NormBox): number {
  const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  return (ix * iy) / (a.w * a.h + b.w * b.h - ix * iy);
}

/** Four digits: two 3s on their own lanes, a 7 going the other way, a 5 moving up and down across the lanes (outside the zone). */
const scene: Scene = {
  width: W,
  height: H,
  frames: 900,
  objects: [
    { label: '3', size: 56, at: (f) => ({ x: bounce(0, 260, 120, f), y: 10 }) },
    { label: '7', size: 56, at: (f) => ({ x: bounce(260, 0, 150, f), y: 90 }) },
    { label: '3', size: 56, sample: 1, at: (f) => (f >= 30 && f < 870 ? { x: bounce(0, 260, 100, f - 30), y: 170 } : null) },
    { label: '5', size: 56, at: (f) => ({ x: 30, y: bounce(0, 180, 90, f) }) },
  ],
};

/** The ground truth as a detector with jitter, 5 % misses and a false alarm in 5 % of frames would see it. */
function detections(frame: number, rnd: () => number): TrackerDetection[] {
  const out: TrackerDetection[] = [];
  for (const t of groundTruth(scene, frame)) {
    if (rnd() < 0.05) continue;
    const b = norm(t.box);
    const j = () => (rnd() - 0.5) * 0.06;
    out.push({ label: t.label, score: 0.5 + rnd() * 0.45, box: { x: b.x + j() * b.w, y: b.y + j() * b.h, w: b.w * (1 + j()), h: b.h * (1 + j()) } });
  }
  if (rnd() < 0.05) out.push({ label: String(Math.floor(rnd() * 10)), score: 0.3 + rnd() * 0.3, box: { x: rnd() * 0.8, y: rnd() * 0.8, w: 0.1 + rnd() * 0.1, h: 0.1 + rnd() * 0.1 } });
  return out;
}

function anchorInside(b: NormBox): boolean {
  return b.x + b.w / 2 >= 0.5;
}

describe('camera: tracker on a synthetic scene with known ground truth', function () {
  it('keeps identities (ID switches < 1 per 100 track-frames) and finds zone entries with precision and recall >= 0.95', function () {
    const tracker = new Tracker({ zones: [RIGHT_HALF] });
    const rnd = mulberry32(7);
    let gtCount = 0;
    let misses = 0;
    let falsePositives = 0;
    let idSwitches = 0;
    let trackFrames = 0;
    const lastTrackOf = new Map<number, number>();
    const entered: Array<{ event: TrackEvent; frame: number }> = [];
    const truthEntries: Array<{ object: number; frame: number }> = [];
    const wasInside = new Map<number, boolean>();
    for (let f = 0; f < scene.frames; f++) {
      const events = tracker.update(detections(f, rnd), { timestamp: f * 100, frame: f });
      const truth = groundTruth(scene, f).map((t) => ({ ...t, nbox: norm(t.box) }));
      for (const t of truth) {
        const inside = anchorInside(t.nbox);
        if (inside && !wasInside.get(t.object)) truthEntries.push({ object: t.object, frame: f });
        wasInside.set(t.object, inside);
      }
      for (const o of scene.objects.keys()) if (!truth.some((t) => t.object === o)) wasInside.delete(o);
      for (const e of events) if (e.type === 'entered') entered.push({ event: e, frame: f });
      // CLEAR-MOT per frame: tracks seen this frame against the truth, greedy at IoU >= 0.5
      const tracks = tracker.snapshot().filter((t) => t.misses === 0);
      trackFrames += tracks.length;
      gtCount += truth.length;
      const pairs = truth.flatMap((t) => tracks.map((k) => ({ t, k, overlap: iouOf(t.nbox, k.box) }))).filter((p) => p.overlap >= 0.5);
      pairs.sort((a, b) => b.overlap - a.overlap);
      const usedT = new Set<number>();
      const usedK = new Set<number>();
      for (const p of pairs) {
        if (usedT.has(p.t.object) || usedK.has(p.k.id)) continue;
        usedT.add(p.t.object);
        usedK.add(p.k.id);
        const last = lastTrackOf.get(p.t.object);
        if (last !== undefined && last !== p.k.id) idSwitches++;
        lastTrackOf.set(p.t.object, p.k.id);
      }
      misses += truth.length - usedT.size;
      falsePositives += tracks.length - usedK.size;
    }
    const mota = 1 - (misses + falsePositives + idSwitches) / gtCount;
    // an event is right when it names an object that entered within the last 8 frames (confirmation and settling lag)
    const matched = new Set<number>();
    let truePositives = 0;
    for (const { event, frame } of entered) {
      const truth = groundTruth(scene, frame).map((t) => ({ ...t, overlap: iouOf(norm(t.box), event.box!) }));
      const who = truth.sort((a, b) => b.overlap - a.overlap)[0];
      const hit = truthEntries.findIndex((e, i) => !matched.has(i) && who && e.object === who.object && frame - e.frame >= 0 && frame - e.frame <= 8);
      if (hit >= 0) {
        matched.add(hit);
        truePositives++;
      }
    }
    const precision = truePositives / entered.length;
    const recall = truePositives / truthEntries.length;
    const switchesPer100 = (100 * idSwitches) / trackFrames;
    console.log(
      `      tracking: ${gtCount} truth boxes, MOTA ${mota.toFixed(3)}, ${idSwitches} ID switches in ${trackFrames} track-frames (${switchesPer100.toFixed(2)} per 100), ` +
        `zone entries: ${truthEntries.length} true, ${entered.length} reported, precision ${precision.toFixed(3)}, recall ${recall.toFixed(3)}`,
    );
    assert.ok(truthEntries.length >= 8, `the scene has ${truthEntries.length} zone entries`);
    assert.ok(switchesPer100 < 1, `${switchesPer100} ID switches per 100 track-frames`);
    assert.ok(precision >= 0.95, `precision ${precision}`);
    assert.ok(recall >= 0.95, `recall ${recall}`);
    assert.ok(mota >= 0.85, `MOTA ${mota}`);
  });
});

describe('camera: tracker events', function () {
  const box = (x: number, y = 0.4, w = 0.1, h = 0.2): NormBox => ({ x, y, w, h });
  function run(options: TrackerOptions, frames: Array<TrackerDetection[]>, fps = 10): Array<TrackEvent & { at: number }> {
    const tracker = new Tracker(options);
    return frames.flatMap((dets, f) => tracker.update(dets, { timestamp: 1000 + (f * 1000) / fps, frame: f }).map((e) => ({ ...e, at: f })));
  }
  const digit = (x: number, score = 0.8, label = '4', y?: number): TrackerDetection => ({ label, score, box: box(x, y) });

  it('needs min hits before a track counts and sends one entered per track and zone, however the box jitters on the border', function () {
    const frames = [0.1, 0.2, 0.3, 0.4, 0.45, 0.46, 0.44, 0.46, 0.44, 0.46, 0.44, 0.46, 0.44, 0.46].map((x) => [digit(x)]);
    const events = run({ zones: [RIGHT_HALF] }, frames);
    const entered = events.filter((e) => e.type === 'entered');
    assert.strictEqual(entered.length, 1);
    assert.strictEqual(events.filter((e) => e.type === 'left').length, 0);
    assert.deepStrictEqual(
      events.filter((e) => e.type === 'count').map((e) => e.count),
      [1],
    );
    // a track seen fewer than min hits times never counts
    assert.deepStrictEqual(run({ zones: [RIGHT_HALF], minHits: 3 }, [[digit(0.7)], [digit(0.7)]]), []);
  });

  it('sends left (exited) when the object moves out and left (lost) when its track ends inside', function () {
    const out = run({ zones: [RIGHT_HALF], minHits: 1 }, [0.6, 0.58, 0.54, 0.5, 0.46, 0.42, 0.38, 0.34, 0.3].map((x) => [digit(x)]));
    assert.deepStrictEqual(
      out.filter((e) => e.type !== 'count').map((e) => [e.type, e.reason]),
      [
        ['entered', undefined],
        ['left', 'exited'],
      ],
    );
    const lost = run({ zones: [RIGHT_HALF], minHits: 1, maxAge: 2 }, [[digit(0.7)], [digit(0.7)], [], [], [], []]);
    const left = lost.find((e) => e.type === 'left')!;
    assert.strictEqual(left.reason, 'lost');
    assert.strictEqual(left.at, 4, 'ends after max age (2) updates without a match');
  });

  it('sends one dwell event once the track has been in the zone N seconds', function () {
    const frames = Array.from({ length: 60 }, () => [digit(0.7)]);
    const dwell = run({ zones: [RIGHT_HALF], minHits: 1, dwellSeconds: 3 }, frames).filter((e) => e.type === 'dwell');
    assert.strictEqual(dwell.length, 1);
    assert.strictEqual(dwell[0].at, 30);
    assert.strictEqual(dwell[0].seconds, 3);
  });

  it('reports a line crossing with its direction and heading, once, and not a pass around the line end', function () {
    // a vertical line in the upper half only: x = 0.5 from y 0 to 0.5, drawn downwards
    const line = { name: 'door', a: [0.5, 0] as [number, number], b: [0.5, 0.5] as [number, number] };
    const across = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65].map((x) => [digit(x, 0.8, '4', 0.1)]);
    const crossed = run({ lines: [line], minHits: 1 }, across).filter((e) => e.type === 'crossed');
    assert.deepStrictEqual(
      crossed.map((e) => [e.line, e.direction, e.heading]),
      [['door', 'right-to-left', 'right']],
    );
    const back = run({ lines: [line], minHits: 1 }, [...across].reverse()).filter((e) => e.type === 'crossed');
    assert.deepStrictEqual(
      back.map((e) => [e.direction, e.heading]),
      [['left-to-right', 'left']],
    );
    // the same walk in the lower half passes below the line's end: no crossing
    const below = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7].map((x) => [digit(x, 0.8, '4', 0.6)]);
    assert.deepStrictEqual(
      run({ lines: [line], minHits: 1 }, below).filter((e) => e.type === 'crossed'),
      [],
    );
  });

  it('counts per zone and label as objects come and go', function () {
    const a = (x: number) => digit(x, 0.9, '1', 0.1);
    const b = (x: number) => digit(x, 0.9, '2', 0.6);
    const frames = [[a(0.7), b(0.1)], [a(0.7), b(0.1)], [a(0.7), b(0.7)], [a(0.7), b(0.7)], [a(0.7), b(0.7)], [b(0.7)], [b(0.7)], [b(0.7)], [b(0.7)]];
    const counts = run({ zones: [RIGHT_HALF], minHits: 1, maxAge: 1 }, frames).filter((e) => e.type === 'count');
    assert.deepStrictEqual(
      counts.map((e) => [e.count, e.labels]),
      [
        [1, { 1: 1 }],
        [2, { 1: 1, 2: 1 }],
        [1, { 2: 1 }],
      ],
    );
  });

  it('applies per-label filters (min score, area range) before tracking', function () {
    const filters = { '4': { minScore: 0.6 }, '*': { minArea: 0.01, maxArea: 0.05 } };
    const tracker = new Tracker({ minHits: 1, filters });
    tracker.update(
      [
        digit(0.1, 0.5), // a 4 below its min score
        digit(0.3, 0.7), // a 4 above it (its own filter has no area bounds)
        { label: '8', score: 0.9, box: box(0.5, 0.1, 0.05, 0.05) }, // area 0.0025: too small
        { label: '8', score: 0.9, box: box(0.6, 0.1, 0.1, 0.2) }, // area 0.02: kept
        { label: '9', score: 0.9, box: box(0.1, 0.5, 0.4, 0.4) }, // area 0.16: too big
      ],
      { timestamp: 0 },
    );
    assert.deepStrictEqual(
      tracker.snapshot().map((t) => [t.label, t.box.x]),
      [
        ['4', 0.3],
        ['8', 0.6],
      ],
    );
  });

  it('carries the best-scoring sighting and its frame on every event', function () {
    const images = [0, 1, 2, 3].map((i) => Buffer.from([i]));
    const tracker = new Tracker({ zones: [RIGHT_HALF], minHits: 3, settleFrames: 1 });
    const scores = [0.6, 0.95, 0.7, 0.8];
    let events: TrackEvent[] = [];
    scores.forEach((score, f) => {
      events = events.concat(tracker.update([digit(0.6 + f * 0.01, score)], { timestamp: f * 100, frame: f, image: images[f] }));
    });
    const entered = events.find((e) => e.type === 'entered')!;
    assert.strictEqual(entered.best!.score, 0.95);
    assert.strictEqual(entered.best!.frame, 1);
    assert.strictEqual(entered.best!.image, images[1]);
    assert.strictEqual(entered.score, 0.7, 'the event also has the current score');
  });

  it('keeps a still object through frames a motion gate held back (velocity per update, not per second)', function () {
    const tracker = new Tracker({ minHits: 1 });
    for (let f = 0; f < 5; f++) tracker.update([digit(0.1 + f * 0.05)], { timestamp: f * 100 });
    // it stopped; the gate passed three still frames, then nothing for a minute
    for (let f = 5; f < 8; f++) tracker.update([digit(0.3)], { timestamp: f * 100 });
    tracker.update([digit(0.3)], { timestamp: 60_000 });
    assert.deepStrictEqual(
      tracker.snapshot().map((t) => t.id),
      [1],
    );
  });

  it('refuses bad options with what was expected', function () {
    assert.throws(() => new Tracker({ minHits: 0 }), /min hits must be a whole number from 1, got 0/);
    assert.throws(() => new Tracker({ zones: [{ name: 'a', polygon: [[0, 0], [1, 1]] }] }), /zone a needs a polygon of at least 3 points/);
    assert.throws(() => new Tracker({ zones: [RIGHT_HALF], lines: [{ name: 'right', a: [0, 0], b: [1, 1] }] }), /names must be unique/);
    assert.throws(() => new Tracker({ filters: { '*': { minScore: 2 } } }), /min score must be from 0 to 1, got 2/);
  });
});
