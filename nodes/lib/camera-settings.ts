/**
 * ncs2-camera and ncs2-track properties as the editor saved them (strings, possibly blank) ->
 * engine options. A bad value raises ConfigError naming the field, what it accepts and what came.
 */
import { ConfigError, parsePoints, type CameraInputKind, type FrameSourceOptions, type LabelFilter, type LineDef, type MotionOptions, type NormPolygon, type TrackerOptions, type ZoneDef } from '../../src/engine';

type Raw = Record<string, unknown>;

interface NumberRule {
  min: number;
  max: number;
  integer?: boolean;
  fallback: number;
}

function numberField(def: Raw, field: string, label: string, rule: NumberRule): number {
  const value = def[field];
  if (value === undefined || value === null || String(value).trim() === '') return rule.fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < rule.min || n > rule.max || (rule.integer && !Number.isInteger(n))) {
    throw new ConfigError(`${label} must be ${rule.integer ? 'a whole number' : 'a number'} from ${rule.min} to ${rule.max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function flag(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null || value === '') return fallback;
  return value === true || value === 'true';
}

function wrap<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw new ConfigError(`${what}: ${(err as Error).message}`);
  }
}

/** Lines of "name: x,y x,y ..." (blank lines and lines starting with # ignored), or a JSON array of {name, points}. */
function namedShapes(value: unknown, what: string, minPoints: number): Array<{ name: string; points: Array<[number, number]> }> {
  const source = typeof value === 'string' ? value.trim() : '';
  if (!source) return [];
  if (source.startsWith('[')) {
    const parsed = wrap(`${what} (JSON)`, () => JSON.parse(source) as unknown);
    if (!Array.isArray(parsed)) throw new ConfigError(`${what} must be a JSON array of {"name", "points"}, got ${source.slice(0, 80)}`);
    return parsed.map((item: { name?: unknown; points?: unknown }, i) => {
      const name = typeof item?.name === 'string' && item.name ? item.name : `${what} ${i + 1}`;
      return { name, points: parsePoints(item?.points, `${what} "${name}"`, minPoints) };
    });
  }
  return source
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line, i) => {
      const colon = line.indexOf(':');
      const name = colon > 0 ? line.slice(0, colon).trim() : `${what} ${i + 1}`;
      return { name, points: parsePoints((colon > 0 ? line.slice(colon + 1) : line).trim(), `${what} "${name}"`, minPoints) };
    });
}

export const CAMERA_INPUTS: readonly CameraInputKind[] = ['rtsp', 'mjpeg', 'snapshot', 'v4l2', 'file'];

export interface CameraSettings {
  source: FrameSourceOptions;
  /** Motion gating; undefined: every frame goes on. */
  motion?: MotionOptions;
}

export function parseCameraSettings(def: Raw, id: string, credentials: { username?: string; password?: string }): CameraSettings {
  const url = typeof def.url === 'string' ? def.url.trim() : '';
  if (!url) throw new ConfigError('a camera URL, device path or video file is needed (rtsp://..., http://..., /dev/video0 or a file path)');
  const input = typeof def.input === 'string' && def.input !== '' && def.input !== 'auto' ? def.input : undefined;
  if (input !== undefined && !CAMERA_INPUTS.includes(input as CameraInputKind)) throw new ConfigError(`input must be auto or one of ${CAMERA_INPUTS.join(', ')}, got ${JSON.stringify(def.input)}`);
  const source: FrameSourceOptions = {
    id,
    url,
    kind: input as CameraInputKind | undefined,
    username: credentials.username || undefined,
    password: credentials.password || undefined,
    fps: numberField(def, 'fps', 'fps', { min: 0, max: 120, fallback: 5 }),
    width: numberField(def, 'width', 'width', { min: 0, max: 7680, integer: true, fallback: 0 }),
    quality: numberField(def, 'quality', 'JPEG quality', { min: 2, max: 31, integer: true, fallback: 5 }),
    hardwareDecode: flag(def.hwaccel, false),
    loop: flag(def.loop, false),
    realtime: flag(def.realtime, true),
    queueSize: numberField(def, 'queueSize', 'queued frames', { min: 1, max: 2, integer: true, fallback: 1 }),
    initialBackoffMs: 1000,
    maxBackoffMs: numberField(def, 'maxBackoff', 'longest reconnect wait', { min: 1, max: 3600, fallback: 30 }) * 1000,
    ffmpegPath: typeof def.ffmpeg === 'string' && def.ffmpeg.trim() ? def.ffmpeg.trim() : 'ffmpeg',
  };
  if (source.kind === 'snapshot' && !source.fps) throw new ConfigError('a snapshot URL needs fps above 0: it is how often the snapshot is fetched');
  if (!flag(def.motion, false)) return { source };
  const masks: NormPolygon[] = namedShapes(def.masks, 'mask', 3).map((m) => m.points);
  return {
    source,
    motion: {
      sensitivity: numberField(def, 'sensitivity', 'motion sensitivity', { min: 1, max: 255, fallback: 25 }),
      minArea: numberField(def, 'minArea', 'minimum changed area (%)', { min: 0, max: 100, fallback: 0.3 }) / 100,
      holdFrames: numberField(def, 'holdFrames', 'frames after motion', { min: 0, max: 1000, integer: true, fallback: 3 }),
      refreshSeconds: numberField(def, 'refresh', 'refresh while still', { min: 0, max: 86400, fallback: 5 }),
      masks,
    },
  };
}

export interface TrackSettings {
  tracker: TrackerOptions;
  /** Cut the best-scoring box as a JPEG onto each event (msg.crop); false: off. */
  crop: false | { padding: number };
}

function parseFilters(value: unknown): Record<string, LabelFilter> | undefined {
  const source = typeof value === 'string' ? value.trim() : '';
  if (!source) return undefined;
  const parsed = wrap('label filters (JSON)', () => JSON.parse(source) as unknown);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`label filters must be a JSON object such as {"person": {"minScore": 0.6, "minArea": 0.01}, "*": {"minScore": 0.5}}, got ${source.slice(0, 80)}`);
  }
  return parsed as Record<string, LabelFilter>;
}

export function parseTrackSettings(def: Raw): TrackSettings {
  const zones: ZoneDef[] = namedShapes(def.zones, 'zone', 3).map((z) => ({ name: z.name, polygon: z.points }));
  const lines: LineDef[] = namedShapes(def.lines, 'line', 2).map((l) => {
    if (l.points.length !== 2) throw new ConfigError(`line "${l.name}" needs exactly 2 points "x,y x,y", got ${l.points.length}`);
    return { name: l.name, a: l.points[0], b: l.points[1] };
  });
  const labels = typeof def.labels === 'string' && def.labels.trim() ? def.labels.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  if (labels) {
    for (const z of zones) z.labels = labels;
    for (const l of lines) l.labels = labels;
  }
  const anchor = def.anchor === 'center' ? 'center' : def.anchor === undefined || def.anchor === '' || def.anchor === 'bottom-center' ? 'bottom-center' : undefined;
  if (!anchor) throw new ConfigError(`anchor must be bottom-center or center, got ${JSON.stringify(def.anchor)}`);
  return {
    tracker: {
      zones,
      lines,
      anchor,
      iouThreshold: numberField(def, 'iouThreshold', 'IoU threshold', { min: 0.01, max: 1, fallback: 0.3 }),
      minHits: numberField(def, 'minHits', 'min hits', { min: 1, max: 100, integer: true, fallback: 3 }),
      maxAge: numberField(def, 'maxAge', 'max age', { min: 0, max: 1000, integer: true, fallback: 2 }),
      settleFrames: numberField(def, 'settleFrames', 'settle frames', { min: 1, max: 100, integer: true, fallback: 2 }),
      dwellSeconds: numberField(def, 'dwell', 'dwell seconds', { min: 0, max: 86400, fallback: 0 }),
      filters: parseFilters(def.filters),
    },
    crop: flag(def.crop, true) ? { padding: numberField(def, 'cropPadding', 'crop padding (%)', { min: 0, max: 100, fallback: 10 }) / 100 } : false,
  };
}
