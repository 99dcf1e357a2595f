/**
 * Crops for a two-stage flow: the regions a first graph found (detections, text boxes) cut out of
 * the input image as raw pixels, ready to be one array payload for a second graph.
 *
 * The source is decoded once (sharp, upright by EXIF like the boxes); each crop then copies only
 * its own rows out of the decoded pixels (one memcpy per row), so no crop costs a copy of the
 * whole image, and the second graph skips encoding and decoding (its preprocessing takes raw pixels).
 */
import { InputError } from '../errors';
import { sharpSource, type ImageSource, type RawImage } from './preprocess';

export interface CropOptions {
  /** Grow each box on every side by this fraction of its width/height (text crops like a margin). Default 0. */
  padding?: number;
  /** Most crops per image (the first ones, i.e. the best-scored for detections). Default 64. */
  maxCrops?: number;
  /** Boxes smaller than this (pixels, either side, after clipping) give no crop. Default 1. */
  minSize?: number;
}

/** Where a crop was cut: integer pixels of the upright source image. */
export interface CropRegion {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Crops {
  crops: RawImage[];
  /** Per crop, the region cut; crops[i] came from boxes[index[i]]. */
  regions: CropRegion[];
  index: number[];
}

export const DEFAULT_MAX_CROPS = 64;

/** A box grown by `padding` and rounded outwards to whole pixels inside the image; undefined when too small. */
export function cropRegion(box: { x: number; y: number; w: number; h: number }, width: number, height: number, padding = 0, minSize = 1): CropRegion | undefined {
  if (![box.x, box.y, box.w, box.h].every(Number.isFinite)) return undefined;
  const px = box.w * padding;
  const py = box.h * padding;
  const x1 = Math.max(0, Math.floor(box.x - px));
  const y1 = Math.max(0, Math.floor(box.y - py));
  const x2 = Math.min(width, Math.ceil(box.x + box.w + px));
  const y2 = Math.min(height, Math.ceil(box.y + box.h + py));
  if (x2 - x1 < minSize || y2 - y1 < minSize) return undefined;
  return { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
}

/** Copies one region out of interleaved pixels, row by row. */
export function extractRegion(source: RawImage, r: CropRegion): RawImage {
  const { channels } = source;
  const rowBytes = r.w * channels;
  const out = Buffer.allocUnsafe(rowBytes * r.h);
  const src = Buffer.from(source.data.buffer, source.data.byteOffset, source.data.byteLength);
  for (let y = 0; y < r.h; y++) {
    const from = ((r.y + y) * source.width + r.x) * channels;
    src.copy(out, y * rowBytes, from, from + rowBytes);
  }
  return { data: out, width: r.w, height: r.h, channels };
}

/**
 * Cuts the boxes out of one image (encoded, or raw pixels). Channels: as the image has them
 * without alpha (1 for grayscale, 3 for colour).
 */
export async function cropRegions(image: ImageSource, boxes: ReadonlyArray<{ box: { x: number; y: number; w: number; h: number } }>, options: CropOptions = {}): Promise<Crops> {
  const padding = options.padding ?? 0;
  const maxCrops = options.maxCrops ?? DEFAULT_MAX_CROPS;
  if (!(padding >= 0 && padding <= 1)) throw new InputError(`crop padding must be a fraction from 0 to 1, got ${JSON.stringify(options.padding)}`);
  if (!(Number.isInteger(maxCrops) && maxCrops > 0)) throw new InputError(`max crops must be a positive integer, got ${JSON.stringify(options.maxCrops)}`);
  if (boxes.length === 0) return { crops: [], regions: [], index: [] };
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    decoded = await sharpSource(image).rotate().removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new InputError(`cannot crop regions: the input image cannot be decoded: ${(err as Error).message.split('\n')[0]}`);
  }
  const { width, height, channels } = decoded.info;
  const source: RawImage = { data: decoded.data, width, height, channels: channels as RawImage['channels'] };
  const result: Crops = { crops: [], regions: [], index: [] };
  for (let i = 0; i < boxes.length && result.crops.length < maxCrops; i++) {
    const region = cropRegion(boxes[i].box, width, height, padding, options.minSize ?? 1);
    if (!region) continue;
    result.crops.push(extractRegion(source, region));
    result.regions.push(region);
    result.index.push(i);
  }
  return result;
}
