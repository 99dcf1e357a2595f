/**
 * Motion gating: decides per frame whether anything moved, so a still camera skips inference.
 * Each frame is downscaled to a small grayscale image by sharp (in libvips' threads, not on the
 * event loop) and compared pixel by pixel with the previous one; a pixel changed when its gray
 * level moved by more than `sensitivity`, and the frame has motion when the changed pixels outside
 * the masks cover at least `minArea` of the unmasked image.
 */
import sharp from 'sharp';
import { EngineError } from '../errors';
import { pointInPolygon, type NormPolygon } from './geometry';

export interface MotionOptions {
  /** Width of the compared image in pixels (height keeps the aspect ratio). Default 64. */
  width?: number;
  /** Gray-level change (1-255) above which a pixel counts as changed. Default 25. */
  sensitivity?: number;
  /** Fraction (0-1) of the unmasked pixels that must change. Default 0.003 (about 9 of 64x48). */
  minArea?: number;
  /** Areas ignored (trees, a clock, a busy road), as normalised polygons. */
  masks?: NormPolygon[];
  /**
   * Frames still passed after motion stops, so a tracker sees objects that left or stopped and
   * can end their tracks: keep it above the tracker's max age. Default 3.
   */
  holdFrames?: number;
  /**
   * Pass a frame at least this often (seconds) while nothing moves, so objects standing still are
   * seen again: a tracker can time their dwell and a dashboard stays current. 0: never. Default 5.
   */
  refreshSeconds?: number;
}

export interface MotionResult {
  /** The frame goes on (motion, the first frame, or within holdFrames after motion). */
  pass: boolean;
  /** Motion was seen in this frame itself. */
  motion: boolean;
  /** Fraction of the unmasked pixels that changed. */
  changed: number;
}

export interface MotionCounts {
  frames: number;
  passed: number;
  skipped: number;
}

export function checkMotionOptions(o: MotionOptions): void {
  const bad = (what: string, v: unknown) => new EngineError(`motion gate: ${what}, got ${JSON.stringify(v)}`, 'CONFIG_INVALID');
  if (o.width !== undefined && !(Number.isInteger(o.width) && o.width >= 8 && o.width <= 1024)) throw bad('width must be a whole number from 8 to 1024', o.width);
  if (o.sensitivity !== undefined && !(o.sensitivity >= 1 && o.sensitivity <= 255)) throw bad('sensitivity must be a gray-level step from 1 to 255', o.sensitivity);
  if (o.minArea !== undefined && !(o.minArea >= 0 && o.minArea <= 1)) throw bad('minimum area must be a fraction from 0 to 1', o.minArea);
  if (o.holdFrames !== undefined && !(Number.isInteger(o.holdFrames) && o.holdFrames >= 0)) throw bad('hold frames must be a whole number from 0', o.holdFrames);
  if (o.refreshSeconds !== undefined && !(o.refreshSeconds >= 0)) throw bad('refresh must be 0 (never) or a number of seconds', o.refreshSeconds);
}

export class MotionGate {
  readonly counts: MotionCounts = { frames: 0, passed: 0, skipped: 0 };
  private previous: Buffer | undefined;
  private size = { width: 0, height: 0 };
  /** 1 where a pixel is compared, 0 where a mask covers it; built for the first frame's size. */
  private include: Uint8Array | undefined;
  private includedPixels = 0;
  private sinceMotion = Infinity;
  private readonly width: number;
  private readonly sensitivity: number;
  private readonly minArea: number;
  private readonly holdFrames: number;
  private readonly refreshMs: number;
  /** When the last frame passed (ms). */
  private lastPassed = -Infinity;

  constructor(private readonly options: MotionOptions = {}) {
    checkMotionOptions(options);
    this.width = options.width ?? 64;
    this.sensitivity = options.sensitivity ?? 25;
    this.minArea = options.minArea ?? 0.003;
    this.holdFrames = options.holdFrames ?? 3;
    this.refreshMs = (options.refreshSeconds ?? 5) * 1000;
  }

  /** Compares an encoded image (JPEG, PNG...) with the previous one; `timestamp` (ms) is when it was taken. */
  async check(image: Buffer, timestamp = Date.now()): Promise<MotionResult> {
    const { data, info } = await sharp(image).resize({ width: this.width }).grayscale().raw().toBuffer({ resolveWithObject: true });
    const result = this.compare(data, info.width, info.height, timestamp);
    if (result.pass) this.lastPassed = timestamp;
    return result;
  }

  private compare(gray: Buffer, width: number, height: number, timestamp: number): MotionResult {
    this.counts.frames++;
    if (!this.previous || width !== this.size.width || height !== this.size.height) {
      // first frame or a new stream size: nothing to compare with; let it through
      this.size = { width, height };
      this.buildMask(width, height);
      this.previous = gray;
      this.sinceMotion = Infinity;
      this.counts.passed++;
      return { pass: true, motion: true, changed: 1 };
    }
    const include = this.include!;
    let changedPixels = 0;
    for (let i = 0; i < gray.length; i++) {
      if (include[i] && Math.abs(gray[i] - this.previous[i]) > this.sensitivity) changedPixels++;
    }
    this.previous = gray;
    const changed = this.includedPixels ? changedPixels / this.includedPixels : 0;
    const motion = this.includedPixels > 0 && changed >= this.minArea && changedPixels > 0;
    this.sinceMotion = motion ? 0 : this.sinceMotion + 1;
    const pass = this.sinceMotion <= this.holdFrames || (this.refreshMs > 0 && timestamp - this.lastPassed >= this.refreshMs);
    if (pass) this.counts.passed++;
    else this.counts.skipped++;
    return { pass, motion, changed };
  }

  private buildMask(width: number, height: number): void {
    const include = new Uint8Array(width * height);
    const masks = this.options.masks ?? [];
    let count = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const cx = (x + 0.5) / width;
        const cy = (y + 0.5) / height;
        const masked = masks.some((m) => pointInPolygon(cx, cy, m));
        include[y * width + x] = masked ? 0 : 1;
        if (!masked) count++;
      }
    }
    this.include = include;
    this.includedPixels = count;
  }
}
