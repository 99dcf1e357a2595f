/**
 * Zones, masks and lines in normalised image coordinates: x and y from 0 (left, top) to 1 (right,
 * bottom), so one definition fits any stream resolution.
 */
import { EngineError } from '../errors';

export type NormPoint = [number, number];
export type NormPolygon = NormPoint[];

/** Whether a point lies inside a polygon (even-odd rule, ray cast to +x). */
export function pointInPolygon(x: number, y: number, polygon: NormPolygon): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Which side of the directed line a->b a point is on, looking from a towards b in image
 * coordinates (y down): 1 right, -1 left, 0 on the line.
 */
export function sideOfLine(a: NormPoint, b: NormPoint, x: number, y: number): -1 | 0 | 1 {
  const cross = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
  return cross > 0 ? 1 : cross < 0 ? -1 : 0;
}

/** Whether segment p->q crosses segment a->b (touching counts). */
export function segmentsIntersect(p: NormPoint, q: NormPoint, a: NormPoint, b: NormPoint): boolean {
  const d1 = sideOfLine(a, b, p[0], p[1]);
  const d2 = sideOfLine(a, b, q[0], q[1]);
  const d3 = sideOfLine(p, q, a[0], a[1]);
  const d4 = sideOfLine(p, q, b[0], b[1]);
  return d1 !== d2 && d3 !== d4;
}

function isPoint(v: unknown): v is NormPoint {
  return Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === 'number' && Number.isFinite(n) && n >= 0 && n <= 1);
}

/**
 * Reads a polygon or line given as [[x, y], ...] or as text "x,y x,y ..." (normalised 0..1);
 * throws saying what was expected when it is neither.
 */
export function parsePoints(value: unknown, what: string, minPoints: number): NormPoint[] {
  let points: unknown = value;
  if (typeof value === 'string') {
    points = value
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((pair) => pair.split(',').map(Number));
  }
  if (!Array.isArray(points) || points.length < minPoints || !points.every(isPoint)) {
    throw new EngineError(
      `${what} needs at least ${minPoints} points as "x,y x,y ..." or [[x,y], ...] with x and y from 0 to 1 (fractions of the image width and height), got ${JSON.stringify(value)}`,
      'CONFIG_INVALID',
    );
  }
  return points as NormPoint[];
}
