/**
 * Cost of the detection postprocessing on the main thread, per image: decoding YOLO outputs of
 * the common sizes (YOLOv5 [1, 25200, 85] with objectness, YOLOv8 [1, 84, 8400] class scores),
 * drawing the annotated JPEG, and cutting crops, on a 1280x720 frame.
 *
 *   npm run build && node dist/bench/detection.js [iterations]
 *
 * The outputs are synthetic (random low scores plus 20 confident boxes): what is measured is the
 * decoder's pass over boxes x classes and NMS, which does not depend on where the numbers came from.
 */
import { performance } from 'perf_hooks';
import sharp from 'sharp';
import { decodeDetections, annotateImage, cropRegions } from '../src/engine';
import type { Detection, DetectionOptions, ImageGeometry, TensorData } from '../src/engine';

const iterations = Number(process.argv[2] ?? 200);
let seed = 42;
const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);

/** boxes x attributes, with `attributesFirst` the YOLOv8 transposed layout. */
function output(boxes: number, classes: number, objectness: boolean, attributesFirst: boolean): TensorData {
  const k = 4 + (objectness ? 1 : 0) + classes;
  const data = new Float32Array(boxes * k);
  const set = (i: number, a: number, v: number) => (data[attributesFirst ? a * boxes + i : i * k + a] = v);
  for (let i = 0; i < boxes; i++) {
    const confident = i % Math.floor(boxes / 20) === 0;
    set(i, 0, random() * 640);
    set(i, 1, random() * 640);
    set(i, 2, 20 + random() * 100);
    set(i, 3, 20 + random() * 100);
    const first = objectness ? 5 : 4;
    if (objectness) set(i, 4, confident ? 0.9 : random() * 0.05);
    for (let c = 0; c < classes; c++) set(i, first + c, confident && c === i % classes ? 0.9 : random() * 0.05);
  }
  return { type: 'float32', dims: attributesFirst ? [1, k, boxes] : [1, boxes, k], data };
}

function time(what: string, n: number, fn: () => unknown): void {
  for (let i = 0; i < Math.min(20, n); i++) fn();
  const start = performance.now();
  for (let i = 0; i < n; i++) fn();
  const ms = (performance.now() - start) / n;
  console.log(`${what.padEnd(48)} ${ms.toFixed(3)} ms per image`);
}

async function timeAsync(what: string, n: number, fn: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < Math.min(5, n); i++) await fn();
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn();
  console.log(`${what.padEnd(48)} ${((performance.now() - start) / n).toFixed(3)} ms per image`);
}

async function main(): Promise<void> {
  const geometry: ImageGeometry = { mode: 'letterbox', sourceWidth: 1280, sourceHeight: 720, width: 640, height: 640, scaleX: 0.5, scaleY: 0.5, offsetX: 0, offsetY: 140 };
  const options: DetectionOptions = { layout: 'yolo', scoreThreshold: 0.25, iouThreshold: 0.45 };
  const v5 = { output0: output(25200, 80, true, false) };
  const v8 = { output0: output(8400, 80, false, true) };
  let found: Detection[] = [];
  time('decode YOLOv5 [1, 25200, 85] (objectness)', iterations, () => (found = decodeDetections(v5, options, [{ geometry }])[0]));
  time('decode YOLOv8 [1, 84, 8400] (class scores)', iterations, () => decodeDetections(v8, options, [{ geometry }]));
  console.log(`  (${found.length} detections kept per image)`);
  const frame = await sharp({ create: { width: 1280, height: 720, channels: 3, background: { r: 40, g: 60, b: 80 } } }).jpeg({ quality: 85 }).toBuffer();
  const n = Math.max(10, Math.round(iterations / 10));
  await timeAsync(`annotate a 1280x720 JPEG with ${found.length} boxes`, n, () => annotateImage(frame, found));
  await timeAsync(`crop ${found.length} regions from a 1280x720 JPEG`, n, () => cropRegions(frame, found));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
