/**
 * Multi-object tracking over per-frame detections, then zone and line events.
 *
 * Tracking is SORT-style: every track predicts where its box is now from a constant-velocity
 * model (an alpha-beta filter on the box centre: simpler than SORT's Kalman filter and enough for
 * boxes that a detector places afresh every frame). Velocity is per update, not per second: frames
 * a motion gate held back showed nothing moving, so they must not move the prediction. Detections are matched to predictions of the
 * same label by IoU, greedily from the best overlap (Hungarian assignment finds the same pairs
 * whenever overlaps are unambiguous, which is the common case for detections of distinct objects),
 * unmatched detections start tentative tracks, a track counts (is confirmed) after `minHits`
 * consecutive matches and ends after `maxAge` updates without one.
 *
 * Zones and lines act on a track's anchor point (bottom centre by default: where an object stands).
 * A zone or side change must hold for `settleFrames` updates before it counts, so a box jittering
 * on a border gives one event, not one per frame. All coordinates are normalised (0..1).
 */
import { EngineError } from '../errors';
import { pointInPolygon, segmentsIntersect, sideOfLine, type NormPoint, type NormPolygon } from './geometry';

export interface NormBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface TrackerDetection {
  label: string;
  score: number;
  box: NormBox;
}

export interface LabelFilter {
  /** Detections scoring below are ignored. */
  minScore?: number;
  /** Smallest box area as a fraction of the image. */
  minArea?: number;
  /** Largest box area as a fraction of the image. */
  maxArea?: number;
}

export interface ZoneDef {
  name: string;
  polygon: NormPolygon;
  /** Only these labels count in the zone; absent: all. */
  labels?: string[];
}

export interface LineDef {
  name: string;
  a: NormPoint;
  b: NormPoint;
  labels?: string[];
}

export interface TrackerOptions {
  /** Least IoU between a track's predicted box and a detection to match them. Default 0.3. */
  iouThreshold?: number;
  /** Consecutive matches before a track is confirmed and takes part in events. Default 3. */
  minHits?: number;
  /** Updates without a match before a confirmed track ends (a motion gate's hold frames must exceed it). Default 2. */
  maxAge?: number;
  /** NormPoint of the box tested against zones and lines. Default 'bottom-center'. */
  anchor?: 'bottom-center' | 'center';
  zones?: ZoneDef[];
  lines?: LineDef[];
  /** Seconds inside a zone before one 'dwell' event; 0: no dwell events. Default 0. */
  dwellSeconds?: number;
  /** Per label (or '*' for every label without its own entry). */
  filters?: Record<string, LabelFilter>;
  /** Updates a zone or line side change must hold before it counts. Default 2. */
  settleFrames?: number;
}

export interface FrameContext {
  /** ms since the epoch. */
  timestamp: number;
  frame?: number;
  /** The encoded frame (not copied): the source of the best-scoring crop. */
  image?: Buffer;
}

export interface BestSighting {
  box: NormBox;
  score: number;
  timestamp: number;
  frame?: number;
  image?: Buffer;
}

export interface TrackInfo {
  id: number;
  label: string;
  score: number;
  box: NormBox;
  /** Centre velocity, image fractions per update. */
  velocity: { x: number; y: number };
  hits: number;
  misses: number;
  confirmed: boolean;
  firstSeen: number;
  lastSeen: number;
  /** Zones the track is in. */
  zones: string[];
}

export type TrackEventType = 'entered' | 'left' | 'dwell' | 'crossed' | 'count';

export interface TrackEvent {
  type: TrackEventType;
  timestamp: number;
  frame?: number;
  zone?: string;
  line?: string;
  /** crossed: from which side of the line to which, looking from its first point towards its second. */
  direction?: 'left-to-right' | 'right-to-left';
  /** crossed: the way the object moved across the line in the image. */
  heading?: 'up' | 'down' | 'left' | 'right';
  trackId?: number;
  label?: string;
  score?: number;
  box?: NormBox;
  /** left: 'exited' (moved out) or 'lost' (track ended inside). */
  reason?: 'exited' | 'lost';
  /** dwell and left: seconds spent in the zone. */
  seconds?: number;
  /** count: confirmed tracks in the zone, in total and per label. */
  count?: number;
  labels?: Record<string, number>;
  /** The track's best-scoring sighting so far. */
  best?: BestSighting;
}

interface ZoneState {
  inside: boolean;
  /** Updates seen in a row on the other side of the border. */
  runs: number;
  enteredAt: number;
  dwellSent: boolean;
}

interface LineState {
  side: -1 | 0 | 1;
  /** Where the anchor was when last seen on the settled side. */
  lastPoint: NormPoint;
  /** Updates seen in a row on the other side. */
  runs: number;
  /** The anchor when first seen on the other side. */
  candidatePoint: NormPoint;
}

interface Track {
  id: number;
  label: string;
  score: number;
  /** Where the track is now: the last detection, moved on by the velocity while it coasts. */
  box: NormBox;
  /** The last detection itself. */
  measured: NormBox;
  vx: number;
  vy: number;
  hits: number;
  misses: number;
  confirmed: boolean;
  firstSeen: number;
  lastSeen: number;
  best: BestSighting;
  zones: Map<string, ZoneState>;
  lines: Map<string, LineState>;
}

/** Share of a new velocity measurement in the smoothed velocity. */
const VELOCITY_GAIN = 0.5;

export function iou(a: NormBox, b: NormBox): number {
  const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

export function checkTrackerOptions(o: TrackerOptions): void {
  const bad = (what: string, v: unknown) => new EngineError(`tracker: ${what}, got ${JSON.stringify(v)}`, 'CONFIG_INVALID');
  if (o.iouThreshold !== undefined && !(o.iouThreshold > 0 && o.iouThreshold <= 1)) throw bad('IoU threshold must be above 0 and at most 1', o.iouThreshold);
  if (o.minHits !== undefined && !(Number.isInteger(o.minHits) && o.minHits >= 1)) throw bad('min hits must be a whole number from 1', o.minHits);
  if (o.maxAge !== undefined && !(Number.isInteger(o.maxAge) && o.maxAge >= 0)) throw bad('max age must be a whole number of updates from 0', o.maxAge);
  if (o.settleFrames !== undefined && !(Number.isInteger(o.settleFrames) && o.settleFrames >= 1)) throw bad('settle frames must be a whole number from 1', o.settleFrames);
  if (o.dwellSeconds !== undefined && !(o.dwellSeconds >= 0)) throw bad('dwell seconds must be 0 (off) or more', o.dwellSeconds);
  if (o.anchor !== undefined && o.anchor !== 'bottom-center' && o.anchor !== 'center') throw bad("anchor must be 'bottom-center' or 'center'", o.anchor);
  const names = new Set<string>();
  for (const z of [...(o.zones ?? []), ...(o.lines ?? [])]) {
    if (typeof z.name !== 'string' || !z.name) throw bad('every zone and line needs a name', z.name);
    if (names.has(z.name)) throw bad('zone and line names must be unique', z.name);
    names.add(z.name);
  }
  for (const z of o.zones ?? []) if (!Array.isArray(z.polygon) || z.polygon.length < 3) throw bad(`zone ${z.name} needs a polygon of at least 3 points`, z.polygon);
  for (const [label, f] of Object.entries(o.filters ?? {})) {
    if (f.minScore !== undefined && !(f.minScore >= 0 && f.minScore <= 1)) throw bad(`filter ${label}: min score must be from 0 to 1`, f.minScore);
    if (f.minArea !== undefined && !(f.minArea >= 0 && f.minArea <= 1)) throw bad(`filter ${label}: min area must be a fraction from 0 to 1`, f.minArea);
    if (f.maxArea !== undefined && !(f.maxArea > 0 && f.maxArea <= 1)) throw bad(`filter ${label}: max area must be a fraction above 0, at most 1`, f.maxArea);
  }
}

function centre(b: NormBox): NormPoint {
  return [b.x + b.w / 2, b.y + b.h / 2];
}

export class Tracker {
  private readonly tracks: Track[] = [];
  private nextId = 1;
  private readonly zoneCounts = new Map<string, number>();
  private readonly iouThreshold: number;
  private readonly minHits: number;
  private readonly maxAge: number;
  private readonly settleFrames: number;

  constructor(private readonly options: TrackerOptions = {}) {
    checkTrackerOptions(options);
    this.iouThreshold = options.iouThreshold ?? 0.3;
    this.minHits = options.minHits ?? 3;
    this.maxAge = options.maxAge ?? 2;
    this.settleFrames = options.settleFrames ?? 2;
    for (const z of options.zones ?? []) this.zoneCounts.set(z.name, 0);
  }

  /** Whether a detection passes its label's filter (or the '*' filter). */
  accepts(d: TrackerDetection): boolean {
    const f = this.options.filters?.[d.label] ?? this.options.filters?.['*'];
    if (!f) return true;
    const area = d.box.w * d.box.h;
    return !(d.score < (f.minScore ?? 0) || area < (f.minArea ?? 0) || area > (f.maxArea ?? 1));
  }

  /** Takes one frame's detections; returns the events it caused, in order. */
  update(detections: TrackerDetection[], ctx: FrameContext): TrackEvent[] {
    const kept = detections.filter((d) => this.accepts(d));
    const predicted = this.tracks.map((t) => ({ ...t.box, x: t.box.x + t.vx, y: t.box.y + t.vy }));
    const pairs: Array<{ t: number; d: number; overlap: number }> = [];
    this.tracks.forEach((t, ti) => {
      kept.forEach((d, di) => {
        if (d.label !== t.label) return;
        // the last detection too: an object that turns or stops is there, not where the model expected it
        const overlap = Math.max(iou(predicted[ti], d.box), iou(t.measured, d.box));
        if (overlap >= this.iouThreshold) pairs.push({ t: ti, d: di, overlap });
      });
    });
    pairs.sort((p, q) => q.overlap - p.overlap);
    const trackMatched = new Array<boolean>(this.tracks.length).fill(false);
    const detMatched = new Array<boolean>(kept.length).fill(false);
    const events: TrackEvent[] = [];
    for (const p of pairs) {
      if (trackMatched[p.t] || detMatched[p.d]) continue;
      trackMatched[p.t] = detMatched[p.d] = true;
      this.matched(this.tracks[p.t], kept[p.d], ctx);
    }
    const survivors: Track[] = [];
    this.tracks.forEach((t, ti) => {
      if (!trackMatched[ti]) {
        t.misses++;
        t.box = predicted[ti];
        if (!t.confirmed || t.misses > this.maxAge) {
          if (t.confirmed) this.ended(t, ctx, events);
          return;
        }
      }
      survivors.push(t);
    });
    this.tracks.length = 0;
    this.tracks.push(...survivors);
    kept.forEach((d, di) => {
      if (!detMatched[di]) this.tracks.push(this.newTrack(d, ctx));
    });
    for (const t of this.tracks) {
      if (!t.confirmed && t.hits >= this.minHits) t.confirmed = true;
      if (t.confirmed && t.misses === 0) this.placeTrack(t, ctx, events);
    }
    this.countZones(ctx, events);
    return events;
  }

  /** The tracks now, confirmed ones first. */
  snapshot(includeTentative = false): TrackInfo[] {
    return this.tracks
      .filter((t) => includeTentative || t.confirmed)
      .map((t) => ({
        id: t.id,
        label: t.label,
        score: t.score,
        box: { ...t.box },
        velocity: { x: t.vx, y: t.vy },
        hits: t.hits,
        misses: t.misses,
        confirmed: t.confirmed,
        firstSeen: t.firstSeen,
        lastSeen: t.lastSeen,
        zones: [...t.zones].filter(([, z]) => z.inside).map(([name]) => name),
      }))
      .sort((a, b) => Number(b.confirmed) - Number(a.confirmed) || a.id - b.id);
  }

  /** Confirmed tracks per zone now. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.zoneCounts);
  }

  private newTrack(d: TrackerDetection, ctx: FrameContext): Track {
    return {
      id: this.nextId++,
      label: d.label,
      score: d.score,
      box: { ...d.box },
      measured: { ...d.box },
      vx: 0,
      vy: 0,
      hits: 1,
      misses: 0,
      confirmed: this.minHits <= 1,
      firstSeen: ctx.timestamp,
      lastSeen: ctx.timestamp,
      best: { box: { ...d.box }, score: d.score, timestamp: ctx.timestamp, frame: ctx.frame, image: ctx.image },
      zones: new Map(),
      lines: new Map(),
    };
  }

  private matched(t: Track, d: TrackerDetection, ctx: FrameContext): void {
    const [ox, oy] = centre(t.box);
    const [nx, ny] = centre(d.box);
    // from the last position (the prediction, when the track coasted) to the measured one
    t.vx += VELOCITY_GAIN * (nx - ox - t.vx);
    t.vy += VELOCITY_GAIN * (ny - oy - t.vy);
    t.box = { ...d.box };
    t.measured = t.box;
    t.score = d.score;
    t.hits++;
    t.misses = 0;
    t.lastSeen = ctx.timestamp;
    if (d.score > t.best.score) t.best = { box: { ...d.box }, score: d.score, timestamp: ctx.timestamp, frame: ctx.frame, image: ctx.image };
  }

  private anchor(t: Track): NormPoint {
    const b = t.box;
    return this.options.anchor === 'center' ? centre(b) : [b.x + b.w / 2, b.y + b.h];
  }

  private event(type: TrackEventType, t: Track, ctx: FrameContext, extra: Partial<TrackEvent>): TrackEvent {
    return { type, timestamp: ctx.timestamp, frame: ctx.frame, trackId: t.id, label: t.label, score: t.score, box: { ...t.box }, best: { ...t.best, box: { ...t.best.box } }, ...extra };
  }

  /** Zone and line state of a confirmed track seen in this frame. */
  private placeTrack(t: Track, ctx: FrameContext, events: TrackEvent[]): void {
    const [x, y] = this.anchor(t);
    for (const zone of this.options.zones ?? []) {
      if (zone.labels && !zone.labels.includes(t.label)) continue;
      const inside = pointInPolygon(x, y, zone.polygon);
      let state = t.zones.get(zone.name);
      if (!state) {
        // a newly confirmed track starts outside, so one already inside enters at once
        state = { inside: false, runs: inside ? this.settleFrames - 1 : 0, enteredAt: ctx.timestamp, dwellSent: false };
        t.zones.set(zone.name, state);
      }
      if (inside !== state.inside) {
        state.runs++;
        if (state.runs >= this.settleFrames) {
          state.inside = inside;
          state.runs = 0;
          if (inside) {
            state.enteredAt = ctx.timestamp;
            state.dwellSent = false;
            events.push(this.event('entered', t, ctx, { zone: zone.name }));
          } else {
            events.push(this.event('left', t, ctx, { zone: zone.name, reason: 'exited', seconds: (ctx.timestamp - state.enteredAt) / 1000 }));
          }
        }
      } else {
        state.runs = 0;
      }
      const dwell = this.options.dwellSeconds ?? 0;
      if (state.inside && dwell > 0 && !state.dwellSent && ctx.timestamp - state.enteredAt >= dwell * 1000) {
        state.dwellSent = true;
        events.push(this.event('dwell', t, ctx, { zone: zone.name, seconds: (ctx.timestamp - state.enteredAt) / 1000 }));
      }
    }
    for (const line of this.options.lines ?? []) {
      if (line.labels && !line.labels.includes(t.label)) continue;
      const side = sideOfLine(line.a, line.b, x, y);
      const state = t.lines.get(line.name);
      if (!state) {
        t.lines.set(line.name, { side, lastPoint: [x, y], runs: 0, candidatePoint: [x, y] });
        continue;
      }
      if (side === 0 || side === state.side) {
        if (side !== 0) state.lastPoint = [x, y];
        state.runs = 0;
        continue;
      }
      if (state.side === 0) {
        state.side = side;
        state.lastPoint = [x, y];
        continue;
      }
      if (state.runs === 0) state.candidatePoint = [x, y];
      state.runs++;
      if (state.runs >= this.settleFrames) {
        // only a path through the segment itself counts, not one around its end
        if (segmentsIntersect(state.lastPoint, state.candidatePoint, line.a, line.b)) {
          const dx = x - state.lastPoint[0];
          const dy = y - state.lastPoint[1];
          const heading = Math.abs(dx) >= Math.abs(dy) ? (dx >= 0 ? 'right' : 'left') : dy >= 0 ? 'down' : 'up';
          events.push(this.event('crossed', t, ctx, { line: line.name, direction: state.side < 0 ? 'left-to-right' : 'right-to-left', heading }));
        }
        state.side = side;
        state.lastPoint = [x, y];
        state.runs = 0;
      }
    }
  }

  /** A confirmed track ends: it leaves every zone it was in. */
  private ended(t: Track, ctx: FrameContext, events: TrackEvent[]): void {
    for (const [zone, state] of t.zones) {
      if (state.inside) events.push(this.event('left', t, ctx, { zone, reason: 'lost', seconds: (ctx.timestamp - state.enteredAt) / 1000 }));
    }
  }

  private countZones(ctx: FrameContext, events: TrackEvent[]): void {
    for (const zone of this.options.zones ?? []) {
      const labels: Record<string, number> = {};
      let count = 0;
      for (const t of this.tracks) {
        if (t.confirmed && t.zones.get(zone.name)?.inside) {
          count++;
          labels[t.label] = (labels[t.label] ?? 0) + 1;
        }
      }
      if (count !== this.zoneCounts.get(zone.name)) {
        this.zoneCounts.set(zone.name, count);
        events.push({ type: 'count', timestamp: ctx.timestamp, frame: ctx.frame, zone: zone.name, count, labels });
      }
    }
  }
}
