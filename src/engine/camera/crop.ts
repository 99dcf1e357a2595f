/** The JPEG crop of an event's best sighting, cut from the frame it was seen in. */
import sharp from 'sharp';
import type { NormBox } from './tracker';

/**
 * Cuts `box` (normalised) out of an encoded image, widened by `padding` (a fraction of the box on
 * every side), as a JPEG; null when the box has no pixels inside the image.
 */
export async function cropJpeg(image: Buffer, box: NormBox, padding = 0.1): Promise<Buffer | null> {
  const meta = await sharp(image).metadata();
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  // rounded, not floored and ceiled: fractions times the size land a hair off whole pixels
  const left = Math.max(0, Math.round((box.x - box.w * padding) * width));
  const top = Math.max(0, Math.round((box.y - box.h * padding) * height));
  const right = Math.min(width, Math.round((box.x + box.w * (1 + padding)) * width));
  const bottom = Math.min(height, Math.round((box.y + box.h * (1 + padding)) * height));
  if (right <= left || bottom <= top) return null;
  return sharp(image).extract({ left, top, width: right - left, height: bottom - top }).jpeg({ quality: 85 }).toBuffer();
}
