import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { decodeDetections, iou, type Detection } from '../../src/engine/io/detection';
import { prepareInput, resolveImageSpec, type TensorAllocator } from '../../src/engine/io/preprocess';
import { readModelInfo } from '../../src/engine/graph/model-info';
import { parseLabels } from '../../src/engine/io/postprocess';
import { typedArrayCtor, type TensorData } from '../../src/engine/tensor';

// Compiled to dist/test/models/, so the repo root is three levels up.
const DIR = path.resolve(__dirname, '../../..', 'models', 'digit-detector');
const MODEL = path.join(DIR, 'digit-detector.onnx');

interface Truth {
  samples: Array<{ file: string; boxes: Array<{ label: string; x: number; y: number; w: number; h: number }> }>;
}

const allocator: TensorAllocator = {
  allocateTensor: (type, dims): TensorData => ({ type, dims, data: new (typedArrayCtor(type))(dims.reduce((a, b) => a * b, 1)) }),
  releaseTensor: () => undefined,
};

const corners = (b: { x: number; y: number; w: number; h: number }) => ({ x1: b.x, y1: b.y, x2: b.x + b.w, y2: b.y + b.h });

/** Detections matched to ground truth one to one (same label, IoU >= 0.5). */
function score(found: Detection[][], truth: Truth['samples']): { tp: number; fp: number; gt: number } {
  let tp = 0;
  let fp = 0;
  let gt = 0;
  truth.forEach((sample, k) => {
    gt += sample.boxes.length;
    const used = new Set<number>();
    for (const d of found[k]) {
      const j = sample.boxes.findIndex((g, i) => !used.has(i) && g.label === d.label && iou(corners(g), corners(d.box)) >= 0.5);
      if (j >= 0) {
        used.add(j);
        tp++;
      } else fp++;
    }
  });
  return { tp, fp, gt };
}

describe('models/digit-detector (trained on real MNIST digits)', function () {
  this.timeout(30000);
  let session: ort.InferenceSession;
  const labels = parseLabels(fs.readFileSync(path.join(DIR, 'labels.txt'), 'utf8'));
  const options = { layout: 'yolo' as const, scoreThreshold: 0.5, iouThreshold: 0.45, labels };

  before(async function () {
    session = await ort.InferenceSession.create(MODEL, { intraOpNumThreads: 1 });
  });
  after(async function () {
    await session?.release();
  });

  async function detect(files: string[], resize: 'stretch' | 'letterbox'): Promise<Detection[][]> {
    const info = readModelInfo(fs.readFileSync(MODEL));
    const spec = resolveImageSpec(info.inputs[0], { resize });
    const prepared = await prepareInput(allocator, info, files.map((f) => fs.readFileSync(path.join(DIR, 'samples', f))), { image: spec });
    const t = prepared.feeds.image;
    const out = await session.run({ image: new ort.Tensor('float32', t.data as Float32Array, t.dims) });
    const d = out.detections;
    return decodeDetections({ detections: { type: 'float32', dims: [...d.dims], data: d.data as Float32Array } }, options, prepared.geometry.map((g) => ({ geometry: g })));
  }

  it('declares image [N, 1, 128, 128] -> detections [N, 256, 15] (YOLO objectness, 10 classes)', function () {
    const info = readModelInfo(fs.readFileSync(MODEL));
    assert.deepEqual(info.inputs.map((i) => [i.name, i.dims]), [['image', ['N', 1, 128, 128]]]);
    assert.deepEqual(info.outputs.map((o) => [o.name, o.dims]), [['detections', ['N', 256, 15]]]);
    assert.equal(labels.length, 10);
  });

  it('finds the digits of the committed held-out scenes (precision and recall >= 0.85 at score 0.5)', async function () {
    const truth = JSON.parse(fs.readFileSync(path.join(DIR, 'samples', 'ground-truth.json'), 'utf8')) as Truth;
    const { tp, fp, gt } = score(await detect(truth.samples.map((s) => s.file), 'stretch'), truth.samples);
    // scripts/train-digit-detector.py measured precision 0.95 and recall 0.94 on 300 held-out scenes.
    if (process.env.SHOW_COUNTS) console.log(`      tp ${tp}, fp ${fp}, ground truth ${gt}`);
    assert.ok(tp / gt >= 0.85 && tp / (tp + fp) >= 0.85, `tp ${tp}, fp ${fp}, ground truth ${gt}`);
  });

  it('gives boxes in the pixels of a 320x240 camera image (letterbox undone)', async function () {
    const truth = JSON.parse(fs.readFileSync(path.join(DIR, 'samples', 'camera-ground-truth.json'), 'utf8')) as Truth;
    const found = await detect(truth.samples.map((s) => s.file), 'letterbox');
    const { tp, fp, gt } = score(found, truth.samples);
    if (process.env.SHOW_COUNTS) console.log(`      tp ${tp}, fp ${fp}, ground truth ${gt}`);
    assert.ok(tp / gt >= 0.85 && tp / (tp + fp) >= 0.85, `tp ${tp}, fp ${fp}, ground truth ${gt}`);
    for (const d of found.flat()) assert.ok(d.box.x >= 40 && d.box.x + d.box.w <= 280, `box ${JSON.stringify(d.box)} inside the scene part of the frame`);
  });
});
