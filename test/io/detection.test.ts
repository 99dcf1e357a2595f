import { strict as assert } from 'assert';
import sharp from 'sharp';
import type { TensorData } from '../../src/engine/tensor';
import { ConfigError } from '../../src/engine/io/errors';
import { decodeImage, resolveImageSpec, type ImageGeometry } from '../../src/engine/io/preprocess';
import { checkDetectionOutputs, decodeDetections, iou, nonMaxSuppression, resolveClassFilter, type DetectionOptions } from '../../src/engine/io/detection';

function f32(dims: number[], values: number[]): TensorData {
  return { type: 'float32', dims, data: Float32Array.from(values) };
}

/** Real outputs have many boxes; the padding rows (all zero) score 0. */
function padded(rows: number[][]): number[][] {
  return [...rows, ...Array.from({ length: 16 - rows.length }, () => new Array<number>(rows[0].length).fill(0))];
}

/** YOLO objectness rows: [cx, cy, w, h, obj, ...classScores] per box. */
function yolo(given: number[][]): Record<string, TensorData> {
  const rows = padded(given);
  return { output0: f32([1, rows.length, rows[0].length], rows.flat()) };
}

/** The same boxes attributes-first, as YOLOv8 exports them: [1, 4 + C, boxes]. */
function yoloV8(given: number[][]): Record<string, TensorData> {
  const rows = padded(given);
  const k = rows[0].length;
  const data: number[] = [];
  for (let a = 0; a < k; a++) for (const r of rows) data.push(r[a]);
  return { output0: f32([1, k, rows.length], data) };
}

const stretch = (sw: number, sh: number, w: number, h: number): ImageGeometry => ({ mode: 'stretch', sourceWidth: sw, sourceHeight: sh, width: w, height: h, scaleX: w / sw, scaleY: h / sh, offsetX: 0, offsetY: 0 });
const identity = (w: number, h: number) => stretch(w, h, w, h);
const YOLO: DetectionOptions = { layout: 'yolo', scoreThreshold: 0.25, iouThreshold: 0.45 };

describe('io/detection', function () {
  describe('YOLO with objectness [N, boxes, 5 + classes]', function () {
    it('decodes hand-computed boxes: score = objectness x best class, cx/cy/w/h to corners', function () {
      const out = yolo([
        [50, 40, 20, 10, 0.9, 0.1, 0.8], // class 1, 0.72, box 40..60 x 35..45
        [10, 10, 4, 4, 0.2, 0.9, 0.0], // objectness below the threshold
        [80, 80, 10, 20, 0.5, 0.6, 0.1], // class 0, 0.30, box 75..85 x 70..90
        [30, 30, 10, 10, 0.9, 0.2, 0.25], // 0.225 < 0.25
      ]);
      const [rows] = decodeDetections(out, { ...YOLO, labels: ['cat', 'dog'] }, [{ geometry: identity(100, 100) }]);
      assert.equal(rows.length, 2);
      assert.deepEqual(rows[0], { label: 'dog', classIndex: 1, score: rows[0].score, box: { x: 40, y: 35, w: 20, h: 10 } });
      assert.ok(Math.abs(rows[0].score - 0.72) < 1e-6);
      assert.deepEqual(rows[1].box, { x: 75, y: 70, w: 10, h: 20 });
      assert.equal(rows[1].label, 'cat');
      assert.ok(Math.abs(rows[1].score - 0.3) < 1e-6);
    });

    it('undoes a stretch: model pixels scale back to the source size', function () {
      // Source 400x200 stretched into 100x100: x * 4, y * 2.
      const [rows] = decodeDetections(yolo([[50, 50, 20, 10, 1, 1]]), YOLO, [{ geometry: stretch(400, 200, 100, 100) }]);
      assert.deepEqual(rows[0].box, { x: 160, y: 90, w: 80, h: 20 });
    });

    it('undoes a letterbox: padding removed, then scaled', function () {
      // Source 200x100 letterboxed into 100x100: scale 0.5, 25 px of padding on top.
      const geometry: ImageGeometry = { mode: 'letterbox', sourceWidth: 200, sourceHeight: 100, width: 100, height: 100, scaleX: 0.5, scaleY: 0.5, offsetX: 0, offsetY: 25 };
      // Tensor box 10..50 x 35..55 -> source 20..100 x 20..60.
      const [rows] = decodeDetections(yolo([[30, 45, 40, 20, 1, 1]]), YOLO, [{ geometry }]);
      assert.deepEqual(rows[0].box, { x: 20, y: 20, w: 80, h: 40 });
    });

    it('clips to the image and drops boxes that lie only in the letterbox padding', function () {
      const geometry: ImageGeometry = { mode: 'letterbox', sourceWidth: 200, sourceHeight: 100, width: 100, height: 100, scaleX: 0.5, scaleY: 0.5, offsetX: 0, offsetY: 25 };
      const [rows] = decodeDetections(
        yolo([
          [95, 50, 20, 20, 0.9, 1], // tensor x 85..105 -> source 170..210, clipped to 200
          [50, 10, 20, 10, 0.8, 1], // tensor y 5..15: all padding
        ]),
        YOLO,
        [{ geometry }],
      );
      assert.equal(rows.length, 1);
      assert.deepEqual(rows[0].box, { x: 170, y: 30, w: 30, h: 40 });
    });

    it('maps boxes through the geometry decodeImage reports for a real letterboxed image', async function () {
      const png = await sharp({ create: { width: 300, height: 150, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer();
      const spec = resolveImageSpec({ name: 'image', type: 'float32', dims: [1, 3, 64, 64] }, { resize: 'letterbox' });
      const { geometry } = await decodeImage(png, spec);
      // 300x150 -> 64x32 placed at y = 16: the tensor box 0..64 x 16..48 is the whole source.
      const [rows] = decodeDetections(yolo([[32, 32, 64, 32, 1, 1]]), YOLO, [{ geometry }]);
      assert.deepEqual(rows[0].box, { x: 0, y: 0, w: 300, h: 150 });
    });

    it('decodes each batch row with its own geometry', function () {
      const out: Record<string, TensorData> = { output0: f32([2, 1, 6], [10, 10, 4, 4, 1, 1, 10, 10, 4, 4, 1, 1]) };
      const rows = decodeDetections(out, { ...YOLO, attributesFirst: false }, [{ geometry: identity(50, 50) }, { geometry: stretch(100, 100, 50, 50) }]);
      assert.deepEqual(rows.map((r) => r[0].box), [
        { x: 8, y: 8, w: 4, h: 4 },
        { x: 16, y: 16, w: 8, h: 8 },
      ]);
    });

    it('keeps model-input coordinates for tensor rows (no geometry), scaling normalized ones by the input size', function () {
      const [rows] = decodeDetections(yolo([[0.5, 0.5, 0.2, 0.1, 1, 1]]), { ...YOLO, coordinates: 'normalized' }, [{ geometry: null, inputSize: { width: 200, height: 100 } }]);
      assert.deepEqual(rows[0].box, { x: 80, y: 45, w: 40, h: 10 });
      const [plain] = decodeDetections(yolo([[50, 50, 20, 10, 1, 1]]), YOLO);
      assert.deepEqual(plain[0].box, { x: 40, y: 45, w: 20, h: 10 });
    });
  });

  describe('YOLO class scores only (YOLOv8 layouts)', function () {
    const rows = [
      [50, 50, 20, 20, 0.1, 0.7, 0.05], // class 1, 0.7
      [20, 20, 10, 10, 0.3, 0.1, 0.2], // class 0, 0.3
      [70, 70, 10, 10, 0.1, 0.1, 0.2], // 0.2: dropped
    ];
    const expected = [
      { label: 'b', classIndex: 1, box: { x: 40, y: 40, w: 20, h: 20 } },
      { label: 'a', classIndex: 0, box: { x: 15, y: 15, w: 10, h: 10 } },
    ];
    const strip = (d: Array<{ label: string; classIndex: number; box: unknown }>) => d.map(({ label, classIndex, box }) => ({ label, classIndex, box }));

    it('[N, 4 + classes, boxes] is read attributes-first, score = class score', function () {
      const [got] = decodeDetections(yoloV8(rows), { ...YOLO, labels: ['a', 'b', 'c'] }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(strip(got), expected);
      assert.ok(Math.abs(got[0].score - 0.7) < 1e-6);
    });

    it('[N, boxes, 4 + classes] is class-scores when the labels number 4 fewer than the values per box', function () {
      const [got] = decodeDetections(yolo(rows), { ...YOLO, labels: ['a', 'b', 'c'] }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(strip(got), expected);
    });

    it('a small output is read by the labels count, or as told', function () {
      // [1, 3 boxes, 7]: 7 = 3 labels + 4, so attributes are the last dim even though it is the larger.
      const small: Record<string, TensorData> = { output0: f32([1, 3, 7], rows.flat()) };
      const [got] = decodeDetections(small, { ...YOLO, labels: ['a', 'b', 'c'] }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(strip(got), expected);
      const [told] = decodeDetections(small, { ...YOLO, attributesFirst: false, yoloVariant: 'class-scores' }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(told.map((d) => d.classIndex), [1, 0]);
    });

    it('an explicit variant overrides the guess', function () {
      const [got] = decodeDetections(yolo(rows), { ...YOLO, yoloVariant: 'class-scores', labels: ['a', 'b', 'c'] }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(strip(got), expected);
      // Read as objectness, the same numbers mean something else (the first box's objectness is 0.1).
      const [asObj] = decodeDetections(yolo(rows), { ...YOLO, yoloVariant: 'objectness' });
      assert.equal(asObj.length, 0);
    });
  });

  describe('SSD', function () {
    const boxesYxyx = [0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 0.2, 0.2, 0.5, 0.5, 0.9, 0.9];
    function ssd(extra: Record<string, TensorData> = {}): Record<string, TensorData> {
      return {
        detection_boxes: f32([1, 3, 4], boxesYxyx),
        detection_classes: f32([1, 3], [2, 1, 2]),
        detection_scores: f32([1, 3], [0.9, 0.8, 0.1]),
        ...extra,
      };
    }

    it('decodes normalized y1,x1,y2,x2 boxes (the default) into source pixels', function () {
      const [rows] = decodeDetections(ssd(), { layout: 'ssd', labels: ['bg', 'cat', 'dog'] }, [{ geometry: stretch(200, 100, 300, 300) }]);
      assert.equal(rows.length, 2);
      // x 0.2..0.6 of 300 = 60..180 tensor -> source x 40..120; y 0.1..0.5 of 300 -> 30..150 -> 10..50.
      assert.deepEqual(rows[0], { label: 'dog', classIndex: 2, score: rows[0].score, box: { x: 40, y: 10, w: 80, h: 40 } });
      assert.deepEqual(rows[1].box, { x: 0, y: 0, w: 40, h: 20 });
      assert.equal(rows[1].label, 'cat');
    });

    it('reads x1,y1,x2,y2 when told', function () {
      const [rows] = decodeDetections(ssd(), { layout: 'ssd', boxOrder: 'xyxy' }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(rows[0].box, { x: 10, y: 20, w: 40, h: 40 });
    });

    it('honours the count output: rows past it are padding', function () {
      const [rows] = decodeDetections(ssd({ num_detections: f32([1], [1]) }), { layout: 'ssd', scoreThreshold: 0 }, [{ geometry: identity(100, 100) }]);
      assert.equal(rows.length, 1);
      assert.equal(rows[0].classIndex, 2);
    });

    it('finds unnamed outputs by shape in TensorFlow order (boxes, classes, scores, count), int64 classes too', function () {
      const out: Record<string, TensorData> = {
        a: f32([1, 3, 4], boxesYxyx),
        b: { type: 'int64', dims: [1, 3], data: BigInt64Array.from([2n, 1n, 2n]) },
        c: f32([1, 3], [0.9, 0.8, 0.1]),
        d: f32([1], [3]),
      };
      const [rows] = decodeDetections(out, { layout: 'ssd' }, [{ geometry: identity(100, 100) }]);
      assert.deepEqual(rows.map((r) => [r.classIndex, r.score.toFixed(2)]), [[2, '0.90'], [1, '0.80']]);
    });

    it('takes per-class scores [N, K, classes] without a classes output', function () {
      const out: Record<string, TensorData> = { boxes: f32([1, 2, 4], [0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1]), scores: f32([1, 2, 3], [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]) };
      const [rows] = decodeDetections(out, { layout: 'ssd', boxOrder: 'xyxy' }, [{ geometry: identity(10, 10) }]);
      assert.deepEqual(rows.map((r) => [r.classIndex, r.box]), [[2, { x: 0, y: 0, w: 5, h: 5 }], [0, { x: 5, y: 5, w: 5, h: 5 }]]);
    });

    it('refuses outputs it cannot map, naming what the model has', function () {
      assert.throws(() => checkDetectionOutputs([{ name: 'logits', type: 'float32', dims: [1, 10] }], { layout: 'ssd' }), (e: Error) => e instanceof ConfigError && /boxes shaped \[N, K, 4\].*'logits' \[1, 10\]/.test(e.message));
      assert.throws(() => checkDetectionOutputs([{ name: 'boxes', type: 'float32', dims: [1, 5, 4] }, { name: 'scores', type: 'float32', dims: [1, 5] }], { layout: 'ssd' }), /needs classes/);
      assert.throws(() => checkDetectionOutputs([{ name: 'b', type: 'float32', dims: [1, 5, 4] }], { layout: 'ssd', outputs: { scores: 'nope' } }), /no output named 'nope'/);
    });
  });

  describe('non-maximum suppression', function () {
    const box = (x1: number, y1: number, x2: number, y2: number, score: number, cls = 0) => ({ x1, y1, x2, y2, score, cls });

    it('keeps boxes that only touch (IoU 0)', function () {
      assert.equal(iou(box(0, 0, 10, 10, 1), box(10, 0, 20, 10, 1)), 0);
      const kept = nonMaxSuppression([box(0, 0, 10, 10, 0.9), box(10, 0, 20, 10, 0.8)], 0, 10);
      assert.equal(kept.length, 2);
    });

    it('suppresses above the IoU threshold only (equal to it is kept)', function () {
      // IoU of 0..10 and 5..15 (same rows) = 50 / 150 = 1/3.
      assert.ok(Math.abs(iou(box(0, 0, 10, 10, 1), box(5, 0, 15, 10, 1)) - 1 / 3) < 1e-12);
      assert.equal(nonMaxSuppression([box(0, 0, 10, 10, 0.9), box(5, 0, 15, 10, 0.8)], 1 / 3, 10).length, 2);
      assert.equal(nonMaxSuppression([box(0, 0, 10, 10, 0.9), box(5, 0, 15, 10, 0.8)], 0.3, 10).length, 1);
    });

    it('equal scores: the box earlier in the output wins, whatever the input order', function () {
      const a = { ...box(0, 0, 10, 10, 0.5), order: 7 };
      const b = { ...box(1, 1, 11, 11, 0.5), order: 3 };
      assert.deepEqual(nonMaxSuppression([a, b], 0.45, 10), [b]);
      assert.deepEqual(nonMaxSuppression([b, a], 0.45, 10), [b]);
    });

    it('is per class unless class-agnostic', function () {
      const boxes = [box(0, 0, 10, 10, 0.9, 0), box(0, 0, 10, 10, 0.8, 1)];
      assert.equal(nonMaxSuppression(boxes, 0.45, 10).length, 2);
      assert.equal(nonMaxSuppression(boxes, 0.45, 10, true).length, 1);
    });

    it('stops at maxDetections, best first', function () {
      const boxes = [0.2, 0.9, 0.5, 0.7].map((s, i) => box(i * 20, 0, i * 20 + 10, 10, s));
      assert.deepEqual(nonMaxSuppression(boxes, 0.45, 2).map((b) => b.score), [0.9, 0.7]);
    });

    it('zero detections: empty rows, not an error', function () {
      assert.deepEqual(nonMaxSuppression([], 0.45, 10), []);
      const rows = decodeDetections(yolo([[10, 10, 4, 4, 0.01, 0.9]]), YOLO, [{ geometry: identity(20, 20) }]);
      assert.deepEqual(rows, [[]]);
    });

    it('a duplicated box through the decoder comes out once', function () {
      const [rows] = decodeDetections(yolo([[50, 50, 20, 20, 0.9, 1], [51, 50, 20, 20, 0.8, 1], [50, 50, 20, 20, 0.7, 1]]), YOLO, [{ geometry: identity(100, 100) }]);
      assert.equal(rows.length, 1);
      assert.ok(Math.abs(rows[0].score - 0.9) < 1e-6);
    });
  });

  describe('class filter and options', function () {
    it('filters by label or index', function () {
      const out = yolo([[10, 10, 4, 4, 1, 0.9, 0, 0], [30, 30, 4, 4, 1, 0, 0.9, 0], [50, 50, 4, 4, 1, 0, 0, 0.9]]);
      const labels = ['person', 'car', 'dog'];
      const [byLabel] = decodeDetections(out, { ...YOLO, labels, classFilter: ['dog', 'person'] });
      assert.deepEqual(byLabel.map((d) => d.label).sort(), ['dog', 'person']);
      const [byIndex] = decodeDetections(out, { ...YOLO, classFilter: [1] });
      assert.deepEqual(byIndex.map((d) => d.classIndex), [1]);
      assert.deepEqual([...resolveClassFilter(['2', 'car'], labels)!], [2, 1]);
      assert.throws(() => resolveClassFilter(['horse'], labels), (e: Error) => e instanceof ConfigError && /horse.*labels: person, car, dog/.test(e.message));
    });

    it('refuses bad thresholds and a YOLO output of the wrong rank', function () {
      assert.throws(() => decodeDetections(yolo([[1, 1, 1, 1, 1, 1]]), { ...YOLO, scoreThreshold: 2 }), /score threshold must be a number from 0 to 1, got 2/);
      assert.throws(() => decodeDetections(yolo([[1, 1, 1, 1, 1, 1]]), { ...YOLO, maxDetections: 0 }), /max detections/);
      assert.throws(() => checkDetectionOutputs([{ name: 'logits', type: 'float32', dims: [1, 10] }], YOLO), /\[N, boxes, 5 \+ classes\].*'logits' is \[1, 10\]/);
    });

    it('describes what it will decode and warns when the labels do not fit', function () {
      const check = checkDetectionOutputs([{ name: 'detections', type: 'float32', dims: ['N', 256, 15] }], { ...YOLO, labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] });
      assert.equal(check.description, "YOLO objectness output 'detections': 256 boxes x 10 classes");
      assert.equal(check.warning, undefined);
      const v8 = checkDetectionOutputs([{ name: 'output0', type: 'float32', dims: [1, 84, 8400] }], { ...YOLO, labels: ['a'] });
      assert.match(v8.description, /class-scores output 'output0': 8400 boxes x 80 classes/);
      assert.match(v8.warning!, /1 labels/);
    });
  });
});
