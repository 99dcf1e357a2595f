/**
 * OCR postprocessing for PP-OCR style models, pure (no Node-RED, no sharp):
 * - text detection: a DB (Differentiable Binarization) probability map -> text boxes, following
 *   PaddleOCR's DBPostProcess (threshold, connected regions, minimum-area rectangle, box score,
 *   unclip by area * ratio / perimeter, minimum size), boxes mapped back to source-image pixels;
 * - text recognition: CTC greedy decoding of [N, T, C] class scores with a character list.
 *
 * Cost is bounded by the map size: one thresholding pass that turns each row into runs of text
 * pixels, union-find over runs (not pixels), and a box score that reads each candidate's rectangle
 * once. Measured on this 2-core VM: 2.9 ms median for a 960x960 map with 13% of it text in 144
 * regions, 1.5 ms for an empty one (the thresholding pass); test/io/ocr.test.ts asserts a bound.
 */
import { readTextFile } from './text-file';
import { InputError } from '../errors';
import type { TensorData } from '../tensor';
import { ConfigError } from './errors';
import { toSourcePoint, type ImageGeometry, type PreprocessOptions } from './preprocess';

// ------------------------------------------------------------------ options and results

/** DB postprocessing settings; the defaults are PaddleOCR's inference defaults for PP-OCRv4. */
export interface DbOptions {
  /** Map pixels above this probability are text (PaddleOCR det_db_thresh). Default 0.3. */
  threshold?: number;
  /** A region whose mean probability inside its rectangle is below this is dropped (det_db_box_thresh). Default 0.6. */
  boxThreshold?: number;
  /** How far a region's rectangle grows: by area * ratio / perimeter on every side (det_db_unclip_ratio). Default 1.5. */
  unclipRatio?: number;
  /** Shortest rectangle side, in map pixels, a region needs (and min + 2 after growing). Default 3. */
  minSize?: number;
  /** Most regions looked at per image, in raster order (bounds the cost of a noisy map). Default 1000. */
  maxCandidates?: number;
  /** Which output holds the map; default the first. */
  outputName?: string;
}

export interface Point {
  x: number;
  y: number;
}

export interface TextBox {
  /** Axis-aligned box around the region, pixels of the source image (top-left origin). */
  box: { x: number; y: number; w: number; h: number };
  /** Mean map probability inside the region's rectangle (before growing). */
  score: number;
  /** The grown minimum-area rectangle, clockwise from top-left, source-image pixels (it may be rotated). */
  polygon?: Point[];
}

export interface TextResult {
  text: string;
  /** Mean probability of the characters kept (0 when no character was read). */
  confidence: number;
}

const DB_DEFAULTS = { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5, minSize: 3, maxCandidates: 1000 };

/**
 * Preprocessing for PP-OCR detection and recognition models as PaddleOCR's own inference does it
 * (tools/infer/predict_det.py, predict_rec.py): images are read BGR by OpenCV and normalised with
 * ImageNet mean/std in that channel order (detector), or to -1..1 (recognizer); the image keeps its
 * aspect ratio and sits at the top-left, padded right (and bottom). The detector takes any size that
 * is a multiple of 32; set width/height to the fixed size wanted (e.g. 640x640).
 */
export const PPOCR_DET_PREPROCESS: Readonly<PreprocessOptions> = Object.freeze({
  resize: 'top-left',
  channelOrder: 'BGR',
  scale: 1 / 255,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  padValue: 0,
});

/** Height 48 as the PP-OCRv3/v4 recognizers are trained; width 320 is PaddleOCR's default rec_image_shape. */
export const PPOCR_REC_PREPROCESS: Readonly<PreprocessOptions> = Object.freeze({
  resize: 'top-left',
  height: 48,
  width: 320,
  channelOrder: 'BGR',
  scale: 1 / 255,
  mean: 0.5,
  std: 0.5,
  // PaddleOCR pads with 0 after normalisation, i.e. mid-grey.
  padValue: 128,
});

function checkNumber(value: number, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Every DB setting decided and checked (ConfigError names the bad one). */
export function resolveDbOptions(options: DbOptions = {}): Required<Omit<DbOptions, 'outputName'>> {
  const o = { ...DB_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkNumber(o.threshold, 'text threshold', 0, 1);
  checkNumber(o.boxThreshold, 'box threshold', 0, 1);
  checkNumber(o.unclipRatio, 'unclip ratio', 0, 10);
  checkNumber(o.minSize, 'min size', 0, 10000);
  checkNumber(o.maxCandidates, 'max candidates', 1, 100000);
  return { threshold: o.threshold, boxThreshold: o.boxThreshold, unclipRatio: o.unclipRatio, minSize: o.minSize, maxCandidates: Math.floor(o.maxCandidates) };
}

// ------------------------------------------------------------------ geometry helpers

/** A rotated rectangle: centre, unit direction of its first side, side lengths. */
interface Rect {
  cx: number;
  cy: number;
  ux: number;
  uy: number;
  w: number;
  h: number;
}

/**
 * Convex hull (Andrew's monotone chain) of points already sorted by (y, x), as flat [x0, y0, ...].
 * Returns the hull as flat coordinates, counter-clockwise in y-down image coordinates.
 */
function convexHull(pts: number[]): number[] {
  const n = pts.length / 2;
  if (n <= 2) return pts.slice();
  const hull: number[] = [];
  const cross = (ax: number, ay: number, bx: number, by: number, cx: number, cy: number) => (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
  const half = (from: number, to: number, step: number) => {
    const start = hull.length;
    for (let i = from; i !== to; i += step) {
      const x = pts[2 * i];
      const y = pts[2 * i + 1];
      while (hull.length - start >= 4 && cross(hull[hull.length - 4], hull[hull.length - 3], hull[hull.length - 2], hull[hull.length - 1], x, y) <= 0) hull.length -= 2;
      hull.push(x, y);
    }
    hull.length -= 2; // the last point starts the other half
  };
  half(0, n, 1);
  half(n - 1, -1, -1);
  return hull;
}

/**
 * Minimum-area enclosing rectangle of a convex hull: one of its sides lies on a hull edge, so every
 * edge is tried (hulls of text regions have tens of points; this is O(h^2), small).
 */
function minAreaRect(hull: number[]): Rect {
  const n = hull.length / 2;
  if (n === 1) return { cx: hull[0], cy: hull[1], ux: 1, uy: 0, w: 0, h: 0 };
  let best: Rect | undefined;
  let bestArea = Infinity;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    let ux = hull[2 * j] - hull[2 * i];
    let uy = hull[2 * j + 1] - hull[2 * i + 1];
    const len = Math.hypot(ux, uy);
    if (len === 0) continue;
    ux /= len;
    uy /= len;
    let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
    for (let k = 0; k < n; k++) {
      const px = hull[2 * k];
      const py = hull[2 * k + 1];
      const u = px * ux + py * uy;
      const v = -px * uy + py * ux;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const area = (maxU - minU) * (maxV - minV);
    // Strictly smaller, with a tolerance, so that ties keep the first edge found (deterministic).
    if (area < bestArea - 1e-9) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = { cx: cu * ux - cv * uy, cy: cu * uy + cv * ux, ux, uy, w: maxU - minU, h: maxV - minV };
    }
  }
  return best!;
}

/** The rectangle's corners ordered top-left, top-right, bottom-right, bottom-left (as PaddleOCR's get_mini_boxes). */
function corners(r: Rect): Point[] {
  const ax = (r.ux * r.w) / 2, ay = (r.uy * r.w) / 2;
  const bx = (-r.uy * r.h) / 2, by = (r.ux * r.h) / 2;
  const pts: Point[] = [
    { x: r.cx - ax - bx, y: r.cy - ay - by },
    { x: r.cx + ax - bx, y: r.cy + ay - by },
    { x: r.cx + ax + bx, y: r.cy + ay + by },
    { x: r.cx - ax + bx, y: r.cy - ay + by },
  ];
  pts.sort((p, q) => p.x - q.x || p.y - q.y);
  const [l1, l2] = pts[0].y <= pts[1].y ? [pts[0], pts[1]] : [pts[1], pts[0]];
  const [r1, r2] = pts[2].y <= pts[3].y ? [pts[2], pts[3]] : [pts[3], pts[2]];
  return [l1, r1, r2, l2];
}

/**
 * Mean of the map inside a convex quad (PaddleOCR's box_score_fast): every pixel whose centre is
 * inside or on the quad counts. Reads each pixel of the quad's bounding rows once.
 */
function quadMean(map: ArrayLike<number>, offset: number, width: number, height: number, quad: Point[]): number {
  const eps = 1e-6;
  let y0 = Infinity, y1 = -Infinity;
  for (const p of quad) {
    y0 = Math.min(y0, p.y);
    y1 = Math.max(y1, p.y);
  }
  const yStart = Math.max(0, Math.ceil(y0 - eps));
  const yEnd = Math.min(height - 1, Math.floor(y1 + eps));
  let sum = 0;
  let count = 0;
  for (let y = yStart; y <= yEnd; y++) {
    // Where the row's line crosses the quad's edges: the span between the outermost crossings.
    let xl = Infinity, xr = -Infinity;
    for (let k = 0; k < 4; k++) {
      const a = quad[k];
      const b = quad[(k + 1) % 4];
      const lo = Math.min(a.y, b.y), hi = Math.max(a.y, b.y);
      if (y < lo - eps || y > hi + eps) continue;
      if (Math.abs(b.y - a.y) < eps) {
        xl = Math.min(xl, a.x, b.x);
        xr = Math.max(xr, a.x, b.x);
      } else {
        const x = a.x + ((y - a.y) * (b.x - a.x)) / (b.y - a.y);
        xl = Math.min(xl, x);
        xr = Math.max(xr, x);
      }
    }
    const xStart = Math.max(0, Math.ceil(xl - eps));
    const xEnd = Math.min(width - 1, Math.floor(xr + eps));
    const row = offset + y * width;
    for (let x = xStart; x <= xEnd; x++) sum += map[row + x];
    if (xEnd >= xStart) count += xEnd - xStart + 1;
  }
  return count === 0 ? 0 : sum / count;
}

// ------------------------------------------------------------------ DB text detection

/** A region found on one map, in map pixel coordinates (pixel centres at integers, as OpenCV's contours). */
export interface MapTextBox {
  /** Grown rectangle corners, clockwise from top-left. */
  polygon: Point[];
  score: number;
}

/**
 * DB postprocessing of one probability map (row-major, `width` x `height`, starting at `offset`):
 * pixels above `threshold` form 8-connected regions; each region's minimum-area rectangle must have a
 * shortest side >= minSize and a mean probability >= boxThreshold; it then grows by
 * area * unclipRatio / perimeter on each side (what PaddleOCR's polygon offset gives for a
 * rectangle) and must reach minSize + 2. Results are in the map's pixel coordinates.
 */
export function dbRegions(map: ArrayLike<number>, width: number, height: number, options: DbOptions = {}, offset = 0): MapTextBox[] {
  const o = resolveDbOptions(options);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InputError(`a probability map needs a positive integer size; got ${width}x${height}`);
  }
  if (map.length < offset + width * height) {
    throw new InputError(`a ${width}x${height} probability map needs ${width * height} values from ${offset}; the data has ${map.length}`);
  }
  const thr = o.threshold;
  // Runs of above-threshold pixels per row, in raster order: [y, x0, x1] flat.
  const runs: number[] = [];
  const rowFirstRun = new Int32Array(height + 1);
  for (let y = 0; y < height; y++) {
    rowFirstRun[y] = runs.length / 3;
    const row = offset + y * width;
    for (let x = 0; x < width; x++) {
      if (!(map[row + x] > thr)) continue;
      const x0 = x;
      while (x + 1 < width && map[row + x + 1] > thr) x++;
      runs.push(y, x0, x);
    }
  }
  const runCount = runs.length / 3;
  rowFirstRun[height] = runCount;
  // Union-find over runs; runs of adjacent rows that overlap or touch diagonally (8-connected, as
  // OpenCV's contours see foreground) join. The root is always the lowest index, i.e. the region's
  // first run in raster order.
  const parent = new Int32Array(runCount);
  for (let i = 0; i < runCount; i++) parent[i] = i;
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  for (let y = 1; y < height; y++) {
    let a = rowFirstRun[y - 1];
    const aEnd = rowFirstRun[y];
    for (let b = rowFirstRun[y]; b < rowFirstRun[y + 1]; b++) {
      const bx0 = runs[3 * b + 1], bx1 = runs[3 * b + 2];
      while (a < aEnd && runs[3 * a + 2] < bx0 - 1) a++;
      for (let k = a; k < aEnd && runs[3 * k + 1] <= bx1 + 1; k++) {
        const ra = find(k), rb = find(b);
        if (ra < rb) parent[rb] = ra;
        else if (rb < ra) parent[ra] = rb;
      }
    }
  }
  // Per region, in order of first appearance: leftmost and rightmost pixel of each row it covers
  // (all the convex hull needs), as points sorted by (y, x).
  const regionOf = new Map<number, number[]>();
  for (let i = 0; i < runCount; i++) {
    const root = find(i);
    let pts = regionOf.get(root);
    if (!pts) {
      if (regionOf.size >= o.maxCandidates) continue;
      regionOf.set(root, (pts = []));
    }
    const y = runs[3 * i], x0 = runs[3 * i + 1], x1 = runs[3 * i + 2];
    const n = pts.length;
    if (n > 0 && pts[n - 1] === y) {
      // Same row as this region's previous run: it lies further right.
      if (pts[n - 3] === y) pts[n - 2] = x1;
      else pts.push(x1, y);
    } else {
      pts.push(x0, y);
      if (x1 !== x0) pts.push(x1, y);
    }
  }
  const results: MapTextBox[] = [];
  for (const pts of regionOf.values()) {
    const rect = minAreaRect(convexHull(pts));
    if (Math.min(rect.w, rect.h) < o.minSize) continue;
    const score = quadMean(map, offset, width, height, corners(rect));
    if (score < o.boxThreshold) continue;
    const perimeter = 2 * (rect.w + rect.h);
    const d = perimeter > 0 ? (rect.w * rect.h * o.unclipRatio) / perimeter : 0;
    const grown: Rect = { ...rect, w: rect.w + 2 * d, h: rect.h + 2 * d };
    if (Math.min(grown.w, grown.h) < o.minSize + 2) continue;
    results.push({ polygon: corners(grown), score });
  }
  return results;
}

/**
 * Orders boxes as text is read: top to bottom, and left to right within a line (boxes whose tops
 * differ by less than half the smaller height are on one line).
 */
export function readingOrder<T extends { box: { x: number; y: number; h: number } }>(boxes: T[]): T[] {
  const byTop = [...boxes].sort((a, b) => a.box.y - b.box.y || a.box.x - b.box.x);
  const lines: T[][] = [];
  for (const b of byTop) {
    const line = lines[lines.length - 1];
    const first = line?.[0];
    if (first && Math.abs(b.box.y - first.box.y) < Math.min(b.box.h, first.box.h) / 2) line.push(b);
    else lines.push([b]);
  }
  return lines.flatMap((line) => line.sort((a, b) => a.box.x - b.box.x));
}

function outputNamed(outputs: Record<string, TensorData>, outputName: string | undefined, what: string): [string, TensorData] {
  const names = Object.keys(outputs);
  const name = outputName ?? names[0];
  const output = outputs[name];
  if (!output) throw new ConfigError(`${what} needs output '${name}'; the model's outputs are ${names.map((n) => `'${n}'`).join(', ')}`);
  if (output.type !== 'float32' && output.type !== 'float64') {
    throw new ConfigError(`${what} needs float scores; output '${name}' is ${output.type}; use the raw preset`);
  }
  return [name, output];
}

/**
 * DB text detection for a batch: output [N, 1, H, W] (or [N, H, W]) -> per row, text boxes in the
 * source image's pixels (the geometry of how each image was fitted undoes the resize and padding;
 * a row without geometry keeps map pixels), in reading order.
 */
export function decodeTextDetection(outputs: Record<string, TensorData>, geometry: ReadonlyArray<ImageGeometry | null>, options: DbOptions = {}): TextBox[][] {
  const [name, output] = outputNamed(outputs, options.outputName, 'text detection');
  const dims = output.dims;
  const ok = (dims.length === 4 && dims[1] === 1) || dims.length === 3;
  if (!ok) throw new ConfigError(`text detection expects a probability map [N, 1, H, W]; output '${name}' is [${dims.join(', ')}]`);
  const [rows, height, width] = [dims[0], dims[dims.length - 2], dims[dims.length - 1]];
  const data = output.data as Float32Array;
  const result: TextBox[][] = [];
  for (let r = 0; r < rows; r++) {
    const g = geometry[r] ?? null;
    const boxes = dbRegions(data, width, height, options, r * width * height).flatMap((region): TextBox[] => {
      const maxX = g ? g.sourceWidth : width;
      const maxY = g ? g.sourceHeight : height;
      const polygon = region.polygon.map((p) => {
        const s = g ? toSourcePoint(g, p.x, p.y) : p;
        return { x: Math.round(Math.min(Math.max(s.x, 0), maxX)), y: Math.round(Math.min(Math.max(s.y, 0), maxY)) };
      });
      const xs = polygon.map((p) => p.x);
      const ys = polygon.map((p) => p.y);
      const box = { x: Math.min(...xs), y: Math.min(...ys), w: Math.max(...xs) - Math.min(...xs), h: Math.max(...ys) - Math.min(...ys) };
      // A region entirely in the padding (or clipped to a line) is not text in the image.
      if (box.w <= 0 || box.h <= 0) return [];
      return [{ box, score: region.score, polygon }];
    });
    result.push(readingOrder(boxes));
  }
  return result;
}

// ------------------------------------------------------------------ CTC text recognition

/**
 * Greedy CTC decoding of one row of T x C scores starting at `offset`: the best class per step,
 * repeats merged, blanks (class 0) dropped. Two equal characters in a row need a blank between them.
 * Confidence is the mean probability of the kept steps (PaddleOCR's); scores that are not
 * probabilities (outside 0..1) are taken as logits and the step's softmax is used instead.
 */
export function ctcGreedyDecode(scores: ArrayLike<number>, steps: number, classes: number, charset: readonly string[], offset = 0): TextResult {
  let text = '';
  let confSum = 0;
  let kept = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    const base = offset + t * classes;
    let best = 0;
    let max = scores[base];
    let probability = true;
    for (let c = 0; c < classes; c++) {
      const v = scores[base + c];
      if (v > max) {
        max = v;
        best = c;
      }
      if (v < 0 || v > 1) probability = false;
    }
    if (best !== 0 && best !== previous) {
      let p = max;
      if (!probability) {
        let sum = 0;
        for (let c = 0; c < classes; c++) sum += Math.exp(scores[base + c] - max);
        p = 1 / sum;
      }
      text += charset[best];
      confSum += p;
      kept++;
    }
    previous = best;
  }
  return { text, confidence: kept === 0 ? 0 : confSum / kept };
}

/** CTC recognition for a batch: output [N, T, C] -> one {text, confidence} per row. */
export function decodeTextRecognition(outputs: Record<string, TensorData>, charset: readonly string[], outputName?: string): TextResult[] {
  const [name, output] = outputNamed(outputs, outputName, 'text recognition');
  const dims = output.dims;
  if (dims.length !== 3) throw new ConfigError(`text recognition expects scores [N, T, classes]; output '${name}' is [${dims.join(', ')}]`);
  checkCharset(charset, dims[2], name);
  const [rows, steps, classes] = dims;
  const results: TextResult[] = [];
  for (let r = 0; r < rows; r++) results.push(ctcGreedyDecode(output.data as Float32Array, steps, classes, charset, r * steps * classes));
  return results;
}

/** The character list must give one entry per model class, or every character would be shifted. */
export function checkCharset(charset: readonly string[], classes: number | string, outputName = 'output'): void {
  if (!Array.isArray(charset) || charset.length < 2) {
    throw new ConfigError(`text recognition needs a character list (index 0 the CTC blank); got ${Array.isArray(charset) ? `${charset.length} entries` : typeof charset}`);
  }
  if (typeof classes === 'number' && classes !== charset.length) {
    throw new ConfigError(`the recognizer's output '${outputName}' has ${classes} classes but the character list gives ${charset.length} (blank + ${charset.length - 1}); use the keys file the model was trained with, and check the space-character setting`);
  }
}

/**
 * A PaddleOCR keys file (one character per line) -> the model's class list: '' (CTC blank) first,
 * then the characters, then ' ' when the model was trained with use_space_char (PP-OCR's are).
 */
export function parseCharset(text: string, options: { spaceChar?: boolean } = {}): string[] {
  const lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new InputError('the character list is empty; expected one character per line');
  return ['', ...lines, ...(options.spaceChar ?? true ? [' '] : [])];
}

export async function loadCharset(path: string, options: { spaceChar?: boolean } = {}): Promise<string[]> {
  const text = await readTextFile(path, 'character list', 'a text file with one character per line (e.g. ppocr_keys_v1.txt)');
  return parseCharset(text, options);
}

// ------------------------------------------------------------------ measuring

/** Levenshtein distance between two strings (by UTF-16 code unit; the charsets here are BMP). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** Character accuracy over pairs: 1 - total edit distance / total expected characters (may go below 0 only if nothing fits). */
export function characterAccuracy(pairs: ReadonlyArray<{ expected: string; actual: string }>): number {
  let errors = 0;
  let total = 0;
  for (const { expected, actual } of pairs) {
    errors += editDistance(expected, actual);
    total += expected.length;
  }
  return total === 0 ? 1 : 1 - errors / total;
}
