/**
 * Object detection decoders: YOLO-style (one output with objectness, or class scores only as
 * YOLOv8 exports them) and SSD-style (separate boxes, scores, classes, optional count), then score
 * threshold, class filter, per-class non-maximum suppression and the letterbox/stretch undone, so
 * boxes come back in the pixels of the image the message carried. Pure functions: no I/O.
 *
 * Cost is bounded: one pass over boxes x classes, at most MAX_CANDIDATES boxes enter NMS (the
 * best-scored ones), and NMS compares each candidate only with the boxes already kept.
 */
import { ConfigError } from './errors';
import { toSourcePoint, type ImageGeometry } from './preprocess';
import type { TensorData } from '../tensor';

export type DetectionLayout = 'yolo' | 'ssd';
/**
 * YOLO output variants:
 * - 'objectness': [N, boxes, 5 + classes] = cx, cy, w, h, objectness, class scores (YOLOv5/v7);
 *   score = objectness x class score;
 * - 'class-scores': [N, boxes, 4 + classes] or [N, 4 + classes, boxes] = cx, cy, w, h, class
 *   scores (YOLOv8/v11); score = class score;
 * - 'auto': [N, 4 + C, boxes] (attributes first) is class-scores; for [N, boxes, K],
 *   class-scores when the labels number exactly K - 4, otherwise objectness. Attributes come first
 *   when the labels' count + 4 or + 5 fits dim 1 and not dim 2, else when dim 1 is the smaller.
 */
export type YoloVariant = 'auto' | 'objectness' | 'class-scores';
/** Corner order of SSD boxes: TensorFlow's detection API writes y1, x1, y2, x2. */
export type BoxOrder = 'yxyx' | 'xyxy';
/** Whether box coordinates are model-input pixels or fractions (0..1) of the input size. */
export type BoxCoordinates = 'pixels' | 'normalized';

export interface DetectionOptions {
  layout: DetectionLayout;
  /** Detections scoring below are dropped. Default 0.25. */
  scoreThreshold?: number;
  /** Two boxes of the same class overlapping more than this (IoU) keep only the higher score. Default 0.45. */
  iouThreshold?: number;
  /** Most detections per image, best first. Default 100. */
  maxDetections?: number;
  /** Label per class index; missing ones are the index as a string. */
  labels?: string[];
  /** Only these classes are reported: labels or class indices (as numbers or digit strings). */
  classFilter?: Array<string | number>;
  /** NMS across classes instead of per class. Default false. */
  classAgnostic?: boolean;
  /** YOLO: which variant (default 'auto'). */
  yoloVariant?: YoloVariant;
  /** YOLO: the output is [N, values per box, boxes] (true) or [N, boxes, values per box] (false); default guessed, see YoloVariant. */
  attributesFirst?: boolean;
  /** SSD: corner order (default 'yxyx'). */
  boxOrder?: BoxOrder;
  /** Default 'pixels' for YOLO, 'normalized' for SSD. */
  coordinates?: BoxCoordinates;
  /** Output names when guessing from names and shapes is not enough. YOLO uses `boxes` as its one output. */
  outputs?: { boxes?: string; scores?: string; classes?: string; count?: string };
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Detection {
  label: string;
  classIndex: number;
  score: number;
  /** In pixels of the (EXIF-oriented) source image, top-left origin, clipped to it. */
  box: Box;
}

/** Where a row's boxes go: the image's geometry, or (tensor input) just the model's input size. */
export interface RowPlacement {
  geometry: ImageGeometry | null;
  /** Model input width x height, to scale normalized boxes when there is no geometry. */
  inputSize?: { width: number; height: number };
}

export const DETECTION_DEFAULTS = { scoreThreshold: 0.25, iouThreshold: 0.45, maxDetections: 100 } as const;
/** Most boxes that enter NMS per image (the best-scored): bounds its cost on noisy outputs. */
export const MAX_CANDIDATES = 3000;

interface Candidate {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  cls: number;
  score: number;
  /** Position in the output, so equal scores keep a stable order. */
  order: number;
}

type Numbers = ArrayLike<number>;
type OutputLike = { name: string; type: string; dims: ReadonlyArray<number | string> };

function numbers(t: TensorData, name: string): Numbers {
  if (t.type === 'string' || t.type === 'float16' || t.type === 'bool') {
    throw new ConfigError(`detection needs numeric outputs; output '${name}' is ${t.type}; use the raw preset`);
  }
  return t.data instanceof BigInt64Array ? Array.from(t.data, Number) : (t.data as Numbers);
}

function describe(outputs: ReadonlyArray<OutputLike>): string {
  return outputs.map((o) => `'${o.name}' [${o.dims.join(', ')}]`).join(', ') || '(none)';
}

// ------------------------------------------------------------------ option checks

/** Checks thresholds and counts; throws ConfigError naming the bad one. */
export function checkDetectionOptions(o: DetectionOptions): void {
  if (o.layout !== 'yolo' && o.layout !== 'ssd') throw new ConfigError(`detection layout must be yolo or ssd, got ${JSON.stringify(o.layout)}`);
  const unit = (v: number | undefined, what: string) => {
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) throw new ConfigError(`${what} must be a number from 0 to 1, got ${JSON.stringify(v)}`);
  };
  unit(o.scoreThreshold, 'score threshold');
  unit(o.iouThreshold, 'IoU threshold');
  if (o.maxDetections !== undefined && !(Number.isInteger(o.maxDetections) && o.maxDetections > 0)) {
    throw new ConfigError(`max detections must be a positive integer, got ${JSON.stringify(o.maxDetections)}`);
  }
}

/** Class filter entries -> class indices (labels looked up; digit strings are indices when no label matches). */
export function resolveClassFilter(filter: Array<string | number> | undefined, labels: string[] = []): Set<number> | undefined {
  if (!filter || filter.length === 0) return undefined;
  const set = new Set<number>();
  for (const entry of filter) {
    const byLabel = typeof entry === 'string' ? labels.indexOf(entry.trim()) : -1;
    if (byLabel >= 0) set.add(byLabel);
    else if (typeof entry === 'number' ? Number.isInteger(entry) && entry >= 0 : /^\d+$/.test(entry.trim())) set.add(Number(entry));
    else throw new ConfigError(`class filter entry ${JSON.stringify(entry)} is neither a label${labels.length ? ` (labels: ${labels.slice(0, 8).join(', ')}${labels.length > 8 ? ', ...' : ''})` : ' (no labels file is set)'} nor a class index`);
  }
  return set;
}

// ------------------------------------------------------------------ YOLO

interface YoloShape {
  boxes: number;
  attributes: number;
  attributesFirst: boolean;
  objectness: boolean;
  classes: number;
}

/**
 * Which of [N, a, b] holds the values per box: the one that is the labels' count plus 4 or 5 when
 * exactly one is; otherwise the smaller (real models have hundreds of boxes or more).
 */
function guessAttributesFirst(a: number, b: number, labels: number | undefined): boolean {
  if (labels) {
    const fitsA = a === labels + 4 || a === labels + 5;
    const fitsB = b === labels + 4 || b === labels + 5;
    if (fitsA !== fitsB) return fitsA;
  }
  return a < b;
}

function yoloShape(dims: ReadonlyArray<number | string>, name: string, o: DetectionOptions): YoloShape | undefined {
  if (dims.length !== 3) {
    throw new ConfigError(`YOLO detection expects one output shaped [N, boxes, 5 + classes] or [N, 4 + classes, boxes]; output '${name}' is [${dims.join(', ')}]`);
  }
  const a = dims[1];
  const b = dims[2];
  // Dynamic dims: known only when the first result arrives.
  if (typeof a !== 'number' || typeof b !== 'number' || a <= 0 || b <= 0) return undefined;
  const attributesFirst = o.attributesFirst ?? guessAttributesFirst(a, b, o.labels?.length);
  const attributes = attributesFirst ? a : b;
  const boxes = attributesFirst ? b : a;
  let variant = o.yoloVariant ?? 'auto';
  if (variant === 'auto') {
    if (attributesFirst) variant = 'class-scores';
    else variant = o.labels && o.labels.length === attributes - 4 && o.labels.length !== attributes - 5 ? 'class-scores' : 'objectness';
  }
  const objectness = variant === 'objectness';
  const classes = attributes - (objectness ? 5 : 4);
  if (classes < 1) {
    throw new ConfigError(`YOLO ${variant} output '${name}' [${dims.join(', ')}] has ${attributes} values per box; at least ${objectness ? 6 : 5} are needed (cx, cy, w, h, ${objectness ? 'objectness, ' : ''}class scores)`);
  }
  return { boxes, attributes, attributesFirst, objectness, classes };
}

function yoloOutput<T extends OutputLike>(outputs: ReadonlyArray<T>, o: DetectionOptions): T {
  const wanted = o.outputs?.boxes;
  const out = wanted ? outputs.find((x) => x.name === wanted) : (outputs.find((x) => x.dims.length === 3) ?? outputs[0]);
  if (!out) throw new ConfigError(`YOLO detection needs ${wanted ? `an output named '${wanted}'` : 'an output'}; the model has ${describe(outputs)}`);
  return out;
}

function yoloCandidates(t: TensorData, name: string, row: number, o: DetectionOptions, threshold: number, filter: Set<number> | undefined): Candidate[] {
  const shape = yoloShape(t.dims, name, o)!;
  const data = numbers(t, name);
  const { boxes, attributes, attributesFirst, objectness } = shape;
  const base = row * boxes * attributes;
  // Element k of box i: attributes-first is [attr][box], boxes-first is [box][attr].
  const stride = attributesFirst ? boxes : 1;
  const out: Candidate[] = [];
  const first = objectness ? 5 : 4;
  // Attributes first: the best class per box in class-major passes over contiguous rows (a
  // box-major walk would stride by `boxes` and miss the cache on every read).
  const bestOf = attributesFirst ? bestClassPerBox(data, base, boxes, first, attributes) : undefined;
  for (let i = 0; i < boxes; i++) {
    const at = attributesFirst ? base + i : base + i * attributes;
    const obj = objectness ? data[at + 4 * stride] : 1;
    if (obj < threshold) continue; // score = obj x class score <= obj
    let best = -1;
    let bestScore = -Infinity;
    if (bestOf) {
      best = bestOf.index[i];
      bestScore = bestOf.score[i];
    } else {
      for (let k = first; k < attributes; k++) {
        const v = data[at + k * stride];
        if (v > bestScore) {
          bestScore = v;
          best = k - first;
        }
      }
    }
    const score = obj * bestScore;
    if (!(score >= threshold) || (filter && !filter.has(best))) continue;
    const cx = data[at];
    const cy = data[at + stride];
    const w = data[at + 2 * stride];
    const h = data[at + 3 * stride];
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, cls: best, score, order: i });
  }
  return out;
}

/** Per box of an attributes-first [attributes][boxes] block: the best class (first on ties) and its score. */
function bestClassPerBox(data: Numbers, base: number, boxes: number, first: number, attributes: number): { index: Int32Array; score: Float32Array } {
  const index = new Int32Array(boxes);
  const score = new Float32Array(boxes).fill(-Infinity);
  for (let k = first; k < attributes; k++) {
    const rowStart = base + k * boxes;
    const cls = k - first;
    for (let i = 0; i < boxes; i++) {
      const v = data[rowStart + i];
      if (v > score[i]) {
        score[i] = v;
        index[i] = cls;
      }
    }
  }
  return { index, score };
}

// ------------------------------------------------------------------ SSD

interface SsdOutputs<T> {
  boxes: T;
  scores: T;
  classes?: T;
  count?: T;
}

/**
 * Finds the SSD outputs by the names given, else by name (box, score, class/label, num/count),
 * else by shape and TensorFlow's order (boxes, classes, scores, count).
 */
function ssdOutputs<T extends OutputLike>(outputs: ReadonlyArray<T>, o: DetectionOptions): SsdOutputs<T> {
  const names = o.outputs ?? {};
  const used = new Set<T>();
  const take = (wanted: string | undefined, pattern: RegExp, avoid: RegExp | undefined, fits: (x: T) => boolean, what: string, required: boolean): T | undefined => {
    if (wanted) {
      const found = outputs.find((x) => x.name === wanted);
      if (!found) throw new ConfigError(`SSD detection: no output named '${wanted}' for ${what}; the model has ${describe(outputs)}`);
      used.add(found);
      return found;
    }
    const free = (x: T) => !used.has(x) && fits(x);
    const found = outputs.find((x) => free(x) && pattern.test(x.name)) ?? outputs.find((x) => free(x) && !(avoid && avoid.test(x.name)));
    if (found) used.add(found);
    else if (required) throw new ConfigError(`SSD detection needs ${what}; the model has ${describe(outputs)}; name the outputs in the graph's settings`);
    return found;
  };
  const SCORE = /score|conf|prob/i;
  const CLASS = /class|label/i;
  const boxes = take(names.boxes, /box/i, undefined, (x) => x.dims.length === 3 && x.dims[2] === 4, 'boxes shaped [N, K, 4]', true)!;
  const count = take(names.count, /num|count/i, SCORE, (x) => x.dims.length === 1 || (x.dims.length === 2 && x.dims[1] === 1), 'a count shaped [N]', false);
  // Scores by name first; unnamed outputs go in TensorFlow's order: classes, then scores.
  const scoresFit = (x: T) => x.dims.length === 2 || x.dims.length === 3;
  const scoresByName = names.scores
    ? take(names.scores, SCORE, CLASS, scoresFit, 'scores', true)
    : outputs.find((x) => !used.has(x) && SCORE.test(x.name) && scoresFit(x));
  if (scoresByName) used.add(scoresByName);
  const classes = take(names.classes, CLASS, SCORE, (x) => x.dims.length === 2, 'classes shaped [N, K]', false);
  const scores = scoresByName ?? take(undefined, SCORE, CLASS, scoresFit, 'scores shaped [N, K] (or [N, K, classes])', true)!;
  if (scores.dims.length === 3) return { boxes, scores, count };
  if (!classes) {
    throw new ConfigError(`SSD detection needs classes shaped [N, K] beside scores '${scores.name}' [${scores.dims.join(', ')}] (or scores shaped [N, K, classes]); the model has ${describe(outputs)}`);
  }
  return { boxes, scores, classes, count };
}

function ssdCandidates(outputs: Record<string, TensorData>, row: number, o: DetectionOptions, threshold: number, filter: Set<number> | undefined): Candidate[] {
  const list = Object.entries(outputs).map(([name, t]) => ({ name, type: t.type, dims: t.dims, t }));
  const found = ssdOutputs(list, o);
  const boxesT = found.boxes.t;
  const k = boxesT.dims[1];
  const boxes = numbers(boxesT, found.boxes.name);
  const scores = numbers(found.scores.t, found.scores.name);
  const perBoxClasses = found.scores.dims.length === 3 ? found.scores.dims[2] : 0;
  const classes = found.classes ? numbers(found.classes.t, found.classes.name) : undefined;
  const scoreK = found.scores.dims[1];
  if (scoreK !== k || (found.classes && found.classes.dims[1] !== k)) {
    throw new ConfigError(`SSD outputs disagree on the number of boxes: boxes [${boxesT.dims.join(', ')}], scores [${found.scores.dims.join(', ')}]${found.classes ? `, classes [${found.classes.dims.join(', ')}]` : ''}`);
  }
  let n = k;
  if (found.count) {
    const c = numbers(found.count.t, found.count.name)[row];
    if (Number.isFinite(c)) n = Math.max(0, Math.min(k, Math.round(c)));
  }
  const yxyx = (o.boxOrder ?? 'yxyx') === 'yxyx';
  const out: Candidate[] = [];
  for (let i = 0; i < n; i++) {
    let cls: number;
    let score: number;
    if (perBoxClasses > 0) {
      const base = (row * k + i) * perBoxClasses;
      cls = 0;
      score = scores[base];
      for (let c = 1; c < perBoxClasses; c++) {
        if (scores[base + c] > score) {
          score = scores[base + c];
          cls = c;
        }
      }
    } else {
      score = scores[row * k + i];
      cls = Math.round(classes![row * k + i]);
    }
    if (!(score >= threshold) || (filter && !filter.has(cls))) continue;
    const b = (row * k + i) * 4;
    const [x1, y1, x2, y2] = yxyx ? [boxes[b + 1], boxes[b], boxes[b + 3], boxes[b + 2]] : [boxes[b], boxes[b + 1], boxes[b + 2], boxes[b + 3]];
    out.push({ x1: Math.min(x1, x2), y1: Math.min(y1, y2), x2: Math.max(x1, x2), y2: Math.max(y1, y2), cls, score, order: i });
  }
  return out;
}

// ------------------------------------------------------------------ NMS

/** Intersection over union of two corner boxes; 0 when either is empty or they only touch. */
export function iou(a: { x1: number; y1: number; x2: number; y2: number }, b: { x1: number; y1: number; x2: number; y2: number }): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Greedy NMS: best score first (equal scores: earlier in the output first), a box is kept unless
 * it overlaps a kept box of its class (any class when agnostic) by more than `iouThreshold`.
 */
export function nonMaxSuppression<T extends Omit<Candidate, 'order'> & { order?: number }>(candidates: T[], iouThreshold: number, maxDetections: number, classAgnostic = false): T[] {
  const sorted = candidates
    .map((c, i) => ({ c, i }))
    .sort((a, b) => b.c.score - a.c.score || (a.c.order ?? a.i) - (b.c.order ?? b.i))
    .slice(0, MAX_CANDIDATES)
    .map((x) => x.c);
  const kept: T[] = [];
  for (const c of sorted) {
    if (kept.length >= maxDetections) break;
    if (kept.every((k) => (!classAgnostic && k.cls !== c.cls) || iou(k, c) <= iouThreshold)) kept.push(c);
  }
  return kept;
}

// ------------------------------------------------------------------ back to source pixels

const round2 = (v: number) => Math.round(v * 100) / 100;

/** A box in model-input pixels -> source-image pixels (letterbox/stretch/crop undone), clipped; undefined when nothing is left. */
export function toSourceBox(c: { x1: number; y1: number; x2: number; y2: number }, geometry: ImageGeometry | null): Box | undefined {
  let { x1, y1, x2, y2 } = c;
  if (geometry) {
    const a = toSourcePoint(geometry, x1, y1);
    const b = toSourcePoint(geometry, x2, y2);
    x1 = Math.max(0, Math.min(geometry.sourceWidth, a.x));
    y1 = Math.max(0, Math.min(geometry.sourceHeight, a.y));
    x2 = Math.max(0, Math.min(geometry.sourceWidth, b.x));
    y2 = Math.max(0, Math.min(geometry.sourceHeight, b.y));
  }
  if (!(x2 > x1 && y2 > y1)) return undefined;
  return { x: round2(x1), y: round2(y1), w: round2(x2 - x1), h: round2(y2 - y1) };
}

// ------------------------------------------------------------------ entry points

/** The batch size the detection outputs carry. */
function rowsOf(outputs: Record<string, TensorData>, o: DetectionOptions): number {
  const list = Object.entries(outputs).map(([name, t]) => ({ name, type: t.type, dims: t.dims }));
  const main = o.layout === 'yolo' ? yoloOutput(list, o) : ssdOutputs(list, o).boxes;
  return main.dims[0] as number;
}

/**
 * Decodes one batch of detection outputs: one list of detections per row, best score first. Row r
 * maps back through placements[r] (missing: boxes stay in model-input coordinates).
 */
export function decodeDetections(outputs: Record<string, TensorData>, options: DetectionOptions, placements: RowPlacement[] = []): Detection[][] {
  checkDetectionOptions(options);
  const threshold = options.scoreThreshold ?? DETECTION_DEFAULTS.scoreThreshold;
  const iouThreshold = options.iouThreshold ?? DETECTION_DEFAULTS.iouThreshold;
  const maxDetections = options.maxDetections ?? DETECTION_DEFAULTS.maxDetections;
  const labels = options.labels ?? [];
  const filter = resolveClassFilter(options.classFilter, labels);
  const normalized = (options.coordinates ?? (options.layout === 'ssd' ? 'normalized' : 'pixels')) === 'normalized';
  const rows = rowsOf(outputs, options);
  const results: Detection[][] = [];
  for (let r = 0; r < rows; r++) {
    let candidates: Candidate[];
    if (options.layout === 'yolo') {
      const list = Object.entries(outputs).map(([name, t]) => ({ name, type: t.type, dims: t.dims, t }));
      const out = yoloOutput(list, options);
      candidates = yoloCandidates(out.t, out.name, r, options, threshold, filter);
    } else {
      candidates = ssdCandidates(outputs, r, options, threshold, filter);
    }
    const place = placements[r] ?? { geometry: null };
    const size = place.geometry ?? place.inputSize;
    if (normalized && size) {
      for (const c of candidates) {
        c.x1 *= size.width;
        c.x2 *= size.width;
        c.y1 *= size.height;
        c.y2 *= size.height;
      }
    }
    const kept = nonMaxSuppression(candidates, iouThreshold, maxDetections, options.classAgnostic);
    const row: Detection[] = [];
    for (const c of kept) {
      const box = toSourceBox(c, place.geometry);
      if (box) row.push({ label: labels[c.cls] ?? String(c.cls), classIndex: c.cls, score: c.score, box });
    }
    results.push(row);
  }
  return results;
}

/**
 * Checks at load time that the model's outputs fit the layout, so a wrong preset shows on the
 * config node. Returns a one-line description of what will be decoded.
 */
export function checkDetectionOutputs(outputs: ReadonlyArray<OutputLike>, options: DetectionOptions): { description: string; warning?: string } {
  checkDetectionOptions(options);
  resolveClassFilter(options.classFilter, options.labels);
  if (options.layout === 'yolo') {
    const out = yoloOutput(outputs, options);
    const shape = yoloShape(out.dims, out.name, options);
    if (!shape) return { description: `YOLO output '${out.name}' [${out.dims.join(', ')}] (variant decided when the first result arrives)` };
    const description = `YOLO ${shape.objectness ? 'objectness' : 'class-scores'} output '${out.name}': ${shape.boxes} boxes x ${shape.classes} classes`;
    if (options.labels && options.labels.length !== shape.classes) {
      return { description, warning: `the labels file has ${options.labels.length} labels but ${description}; classes without a label are named by their index (check the labels file or the YOLO variant)` };
    }
    return { description };
  }
  const found = ssdOutputs(outputs, options);
  return { description: `SSD outputs: boxes '${found.boxes.name}', scores '${found.scores.name}'${found.classes ? `, classes '${found.classes.name}'` : ''}${found.count ? `, count '${found.count.name}'` : ''}` };
}
