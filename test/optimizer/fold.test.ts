import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { buildMobileNetLike } from '../../src/engine/graph/builder';
import { DataType, IGraphProto, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { readModelInfo } from '../../src/engine/graph/model-info';
import { decodeImage, resolveImageSpec, writePixels, type PreprocessOptions } from '../../src/engine/io/preprocess';
import { OptimizeOptionsError, optimizeModel } from '../../src/engine/graph/optimizer';
import { fromHalfBits } from '../../src/engine/graph/optimizer/half';
import { MNIST_MODEL, MNIST_SAMPLES, loadMnist, relativeError, runOnce } from './helpers';

/** The engine's JavaScript preprocessing of `image` for the model's first input. */
async function jsTensor(model: Uint8Array, image: Buffer, options: PreprocessOptions = {}): Promise<{ data: Float32Array | Uint8Array; dims: number[]; pixels: Buffer }> {
  const input = readModelInfo(model).inputs[0];
  const spec = resolveImageSpec(input, options);
  const { pixels } = await decodeImage(image, spec);
  const dims = spec.layout === 'NCHW' ? [1, spec.channels, spec.height, spec.width] : [1, spec.height, spec.width, spec.channels];
  const data = spec.dtype === 'uint8' ? new Uint8Array(pixels.length) : new Float32Array(pixels.length);
  writePixels(pixels, spec, data, 0);
  return { data, dims, pixels };
}

async function colourImage(size: number, seed: number): Promise<Buffer> {
  const raw = Buffer.alloc(size * size * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37 + seed * 101 + ((i / 3) | 0) % 251) & 0xff;
  return sharp(raw, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
}

describe('optimizer: folded preprocessing', function () {
  this.timeout(60000);

  it('MNIST: uint8 NHWC input gives the same logits as JavaScript preprocessing + the float model', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    const { bytes, report } = await optimizeModel(original, { precision: 'fp32', foldPreprocessing: true });
    const info = readModelInfo(bytes);
    assert.deepEqual(info.inputs, [{ name: 'image', type: 'uint8', dims: ['N', 28, 28, 1] }]);
    assert.deepEqual(report.preprocessing?.nodesAdded, ['Transpose', 'Cast', 'Mul']);
    assert.equal(report.preprocessing?.bytesPerSampleBefore, 3136);
    assert.equal(report.preprocessing?.bytesPerSampleAfter, 784);
    for (const f of fs.readdirSync(MNIST_SAMPLES).filter((n) => n.endsWith('.png')).slice(0, 6)) {
      const png = fs.readFileSync(path.join(MNIST_SAMPLES, f));
      const js = await jsTensor(original, png);
      const a = (await runOnce(original, { image: new ort.Tensor('float32', js.data as Float32Array, js.dims) })).logits.data as Float32Array;
      const folded = await jsTensor(bytes, png);
      assert.equal(folded.data.constructor, Uint8Array, 'the engine feeds the folded model raw pixels');
      const b = (await runOnce(bytes, { image: new ort.Tensor('uint8', folded.data as Uint8Array, folded.dims) })).logits.data as Float32Array;
      assert.ok(relativeError(a, b) < 1e-5, `${f}: ${relativeError(a, b)}`);
    }
  });

  it('3 channels with mean/std and BGR: the folded tensor equals the JavaScript one, 4x fewer input bytes', async function () {
    // Identity model: its output is the preprocessed tensor itself.
    const graph: IGraphProto = {
      name: 'identity',
      node: [makeNode('Identity', ['input'], ['output'])],
      input: [makeValueInfo('input', DataType.FLOAT, ['N', 3, 32, 32])],
      output: [makeValueInfo('output', DataType.FLOAT, ['N', 3, 32, 32])],
    };
    const identity = encodeModel(makeModel(graph));
    const norm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channelOrder: 'BGR' as const };
    const { bytes, report } = await optimizeModel(identity, { precision: 'fp32', foldPreprocessing: norm });
    assert.deepEqual(report.preprocessing?.nodesAdded, ['Transpose', 'Gather', 'Cast', 'Mul', 'Add']);
    assert.equal((report.preprocessing?.bytesPerSampleBefore ?? 0) / (report.preprocessing?.bytesPerSampleAfter ?? 1), 4);
    const png = await colourImage(32, 1);
    const js = await jsTensor(identity, png, norm);
    const folded = await jsTensor(bytes, png);
    const out = (await runOnce(bytes, { input: new ort.Tensor('uint8', folded.data as Uint8Array, folded.dims) })).output.data as Float32Array;
    const ref = js.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(out[i] - ref[i]) / Math.max(1, Math.abs(ref[i])));
    // Same formula; JavaScript evaluates it in double before storing float32, the graph in float32.
    assert.ok(worst < 1e-6, `max difference ${worst}`);
  });

  it('combines with INT8 and FP16 (fp16Io: uint8 in, float16 out)', async function () {
    const mobilenet = buildMobileNetLike({ inputSize: 64, widthMultiplier: 0.35, numClasses: 10 });
    const fp16 = await optimizeModel(mobilenet, { precision: 'fp16', fp16Io: true, foldPreprocessing: { mean: 0.5, std: 0.25 } });
    const info = readModelInfo(fp16.bytes);
    assert.deepEqual(info.inputs[0], { name: 'input', type: 'uint8', dims: ['N', 64, 64, 3] });
    assert.equal(info.outputs[0].type, 'float16');
    assert.equal(fp16.report.preprocessing?.before.type, 'float16');
    const png = await colourImage(64, 2);
    const js = await jsTensor(mobilenet, png, { mean: 0.5, std: 0.25 });
    const ref = (await runOnce(mobilenet, { input: new ort.Tensor('float32', js.data as Float32Array, js.dims) })).logits.data as Float32Array;
    const u8 = await jsTensor(fp16.bytes, png);
    const half = (await runOnce(fp16.bytes, { input: new ort.Tensor('uint8', u8.data as Uint8Array, u8.dims) })).logits;
    assert.equal(half.type, 'float16');
    assert.ok(relativeError(ref, Array.from(half.data as Uint16Array, fromHalfBits)) < 1e-2);

    // INT8 + fold on MNIST: calibration stays in the original float input's terms.
    const original = fs.readFileSync(MNIST_MODEL);
    const int8 = await optimizeModel(original, { precision: 'int8', calibration: loadMnist().calibration, foldPreprocessing: true });
    assert.equal(readModelInfo(int8.bytes).inputs[0].type, 'uint8');
    for (const f of fs.readdirSync(MNIST_SAMPLES).filter((n) => n.endsWith('.png'))) {
      const u = await jsTensor(int8.bytes, fs.readFileSync(path.join(MNIST_SAMPLES, f)));
      const logits = (await runOnce(int8.bytes, { image: new ort.Tensor('uint8', u.data as Uint8Array, u.dims) })).logits.data as Float32Array;
      const best = logits.indexOf(Math.max(...logits));
      assert.equal(best, Number(/-(\d)\.png$/.exec(f)?.[1]), f);
    }
  });

  it('refuses what it cannot fold, naming the problem', async function () {
    const original = fs.readFileSync(MNIST_MODEL);
    await assert.rejects(optimizeModel(original, { precision: 'fp32', foldPreprocessing: { input: 'nope' } }), /'nope' is not a model input \(inputs: 'image'\)/);
    await assert.rejects(optimizeModel(original, { precision: 'fp32', foldPreprocessing: { mean: [1, 2, 3] } }), (err: unknown) => err instanceof OptimizeOptionsError && /an array of 1 \(one per channel; the input has 1 channel\)/.test(err.message));
  });
});
