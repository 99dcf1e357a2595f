/**
 * Annotated images for dashboards: boxes and labels drawn over the input image as one SVG overlay
 * that sharp composites in its own threads, encoded as JPEG. The input Buffer is only read.
 */
import sharp, { type Metadata } from 'sharp';
import { InputError } from '../errors';
import { isRawImage, sharpSource, type ImageSource } from './preprocess';

/** Anything with a box in source-image pixels: detections, text boxes, crops. */
export interface Annotation {
  box: { x: number; y: number; w: number; h: number };
  label?: string;
  score?: number;
  /** Picks the colour (same class, same colour); default the item's position. */
  classIndex?: number;
  /** Extra text after the label (e.g. recognised text). */
  text?: string;
}

export interface AnnotateOptions {
  /** JPEG quality 1..100. Default 80. */
  quality?: number;
  /** Line width in pixels; default scales with the image (about 1/200 of its larger side, at least 2). */
  lineWidth?: number;
  /** Label text size in pixels; default about 1/40 of the larger side, at least 10. */
  fontSize?: number;
  /** Show the score after the label. Default true. */
  scores?: boolean;
}

/** Distinct colours (Tableau 10): one per class index, cycling. */
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** The SVG drawn over a width x height image: one rectangle and one label tag per item. */
export function annotationSvg(width: number, height: number, items: ReadonlyArray<Annotation>, options: AnnotateOptions = {}): string {
  const side = Math.max(width, height);
  const line = options.lineWidth ?? Math.max(2, Math.round(side / 200));
  const font = options.fontSize ?? Math.max(10, Math.round(side / 40));
  const parts: string[] = [];
  items.forEach((item, i) => {
    const { x, y, w, h } = item.box;
    if (![x, y, w, h].every(Number.isFinite)) return;
    const colour = PALETTE[(item.classIndex ?? i) % PALETTE.length];
    parts.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="${colour}" stroke-width="${line}"/>`);
    const words = [item.label, options.scores === false || item.score === undefined ? undefined : item.score.toFixed(2), item.text].filter((s) => s !== undefined && s !== '');
    if (words.length === 0) return;
    const caption = escapeXml(words.join(' '));
    const tagH = Math.round(font * 1.3);
    // Above the box when there is room, else inside its top edge.
    const tagY = y - tagH >= 0 ? y - tagH : y;
    const tagW = Math.round(font * 0.62 * words.join(' ').length + font * 0.6);
    parts.push(`<rect x="${x}" y="${tagY}" width="${tagW}" height="${tagH}" fill="${colour}"/>`);
    parts.push(`<text x="${x + font * 0.3}" y="${tagY + font}" font-family="sans-serif" font-size="${font}" fill="#ffffff">${caption}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}

/**
 * Draws the items on the image (turned upright by its EXIF orientation, as the boxes are) and
 * returns a JPEG of the same size.
 */
export async function annotateImage(image: ImageSource, items: ReadonlyArray<Annotation>, options: AnnotateOptions = {}): Promise<Buffer> {
  const quality = options.quality ?? 80;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new InputError(`JPEG quality must be an integer 1..100, got ${JSON.stringify(options.quality)}`);
  // The overlay has the upright size (what the boxes refer to), read from the header; sharp then
  // decodes, turns upright, composites and encodes in one pipeline (the composite follows the rotation).
  let width: number;
  let height: number;
  if (isRawImage(image)) {
    ({ width, height } = image);
  } else {
    let meta: Metadata;
    try {
      meta = await sharp(image).metadata();
    } catch (err) {
      throw new InputError(`cannot annotate: the input image cannot be decoded: ${(err as Error).message.split('\n')[0]}`);
    }
    width = meta.autoOrient?.width ?? meta.width ?? 0;
    height = meta.autoOrient?.height ?? meta.height ?? 0;
  }
  const svg = annotationSvg(width, height, items, options);
  return sharpSource(image)
    .rotate()
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .jpeg({ quality })
    .toBuffer();
}
