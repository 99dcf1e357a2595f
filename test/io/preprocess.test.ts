import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { InputError } from '../../src/engine/errors';
import type { TensorInfo } from '../../src/engine/graph/model-info';
import { elementCount, typedArrayCtor, type TensorData, type TensorType } from '../../src/engine/tensor';
import { ConfigError } from '../../src/engine/io/errors';
import {
  decodeImage,
  imageToTensor,
  prepareInput,
  releaseInput,
  resolveImageSpec,
  toSourcePoint,
  type ImageSpec,
  type PreprocessOptions,
  type TensorAllocator,
} from '../../src/engine/io/preprocess';

// Compiled to dist/test/io/, so the repo root is three levels up.
const ROOT = path.resolve(__dirname, '../../..');
const SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');

/** Plain (unpooled) tensors, counting what is taken and given back. */
function testAllocator(): TensorAllocator & { allocated: TensorData[]; released: TensorData[] } {
  const allocated: TensorData[] = [];
  const released: TensorData[] = [];
  return {
    allocated,
    released,
    allocateTensor(type: TensorType, dims: number[]) {
      const tensor = { type, dims, data: new (typedArrayCtor(type))(elementCount(dims)) };
      allocated.push(tensor);
      return tensor;
    },
    releaseTensor(tensor: TensorData) {
      released.push(tensor);
    },
  };
}

function input(dims: Array<number | string>, type: TensorInfo['type'] = 'float32', name = 'x'): TensorInfo {
  return { name, type, dims };
}

function modelInfo(inputs: TensorInfo[]) {
  return { inputs, outputs: [], opsetVersion: 17, irVersion: 8, producer: 'test', nodeCount: 0, opTypes: {}, weightBytes: 0, precision: 'fp32' as const };
}

/** A lossless PNG from interleaved RGB bytes. */
function rgbPng(width: number, height: number, rgb: number[]): Promise<Buffer> {
  return sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

function solid(width: number, height: number, value: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: value, g: value, b: value } } }).png().toBuffer();
}

function spec(dims: Array<number | string>, options: PreprocessOptions = {}, type: TensorInfo['type'] = 'float32'): ImageSpec {
  return resolveImageSpec(input(dims, type), options);
}

async function tensorOf(image: Buffer, imageSpec: ImageSpec): Promise<number[]> {
  const { tensor } = await imageToTensor(testAllocator(), image, imageSpec);
  return Array.from(tensor.data as Float32Array);
}

// 2x2 image with a distinct value in every channel of every pixel: row-major (0,0) (1,0) (0,1) (1,1).
const PIXELS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];

describe('io/preprocess', function () {
  this.timeout(20000);

  describe('resolveImageSpec', function () {
    it('takes size, channels, layout and dtype from a fixed model input (MNIST: grayscale NCHW, 0..1)', function () {
      const s = spec(['N', 1, 28, 28]);
      assert.deepEqual(
        { width: s.width, height: s.height, channels: s.channels, layout: s.layout, dtype: s.dtype, scale: s.scale, mean: s.mean, std: s.std, resize: s.resize },
        { width: 28, height: 28, channels: 1, layout: 'NCHW', dtype: 'float32', scale: 1 / 255, mean: [0], std: [1], resize: 'stretch' },
      );
    });

    it('detects NHWC from a trailing channel dim', function () {
      const s = spec([1, 224, 160, 3]);
      assert.equal(s.layout, 'NHWC');
      assert.equal(s.width, 160);
      assert.equal(s.height, 224);
      assert.equal(s.channels, 3);
    });

    it('asks for a size when the model input has dynamic height and width', function () {
      assert.throws(() => spec(['N', 3, 'H', 'W']), (err: Error) => err instanceof ConfigError && /dynamic height/.test(err.message) && /set height/.test(err.message));
      const s = spec(['N', 3, 'H', 'W'], { width: 64, height: 48 });
      assert.equal(s.width, 64);
      assert.equal(s.height, 48);
    });

    it('refuses settings that contradict the model, naming both', function () {
      assert.throws(() => spec(['N', 1, 28, 28], { width: 32 }), /width 32 does not fit input 'x' float32\[N, 1, 28, 28\].*needs 28/);
      assert.throws(() => spec(['N', 1, 28, 28], { channels: 3 }), /channels 3 does not fit.*needs 1/);
      assert.throws(() => spec(['N', 3, 8, 8], { mean: [1, 2] }), /mean needs 1 or 3 values/);
      assert.throws(() => spec(['N', 3, 8, 8], { std: 0 }), /std values must not be 0/);
      assert.throws(() => spec(['N', 8, 8, 3], { scale: 1 }, 'uint8'), /uint8 pixels as they are/);
    });

    it('explains why a non-image input cannot take images', function () {
      assert.throws(() => spec(['N', 784]), (err: Error) => err instanceof ConfigError && /4-D model input/.test(err.message) && /\[N, 784\]/.test(err.message));
      assert.throws(() => spec(['N', 3, 8, 8], {}, 'int64'), /float32 or uint8 inputs/);
    });
  });

  describe('layouts on known pixels', function () {
    let image: Buffer;
    before(async function () {
      image = await rgbPng(2, 2, PIXELS);
    });

    it('NCHW puts each channel plane after the other', async function () {
      const values = await tensorOf(image, spec(['N', 3, 2, 2], { scale: 1 }));
      assert.deepEqual(values, [10, 40, 70, 100, 20, 50, 80, 110, 30, 60, 90, 120]);
    });

    it('NHWC keeps pixels interleaved', async function () {
      const values = await tensorOf(image, spec(['N', 2, 2, 3], { scale: 1 }));
      assert.deepEqual(values, PIXELS);
    });

    it('BGR reverses the channel order', async function () {
      const values = await tensorOf(image, spec(['N', 3, 2, 2], { scale: 1, channelOrder: 'BGR' }));
      assert.deepEqual(values, [30, 60, 90, 120, 20, 50, 80, 110, 10, 40, 70, 100]);
    });

    it('applies (pixel * scale - mean) / std per channel', async function () {
      const s = spec(['N', 3, 2, 2], { mean: [0.5, 0.25, 0], std: [0.5, 0.25, 2] });
      const values = await tensorOf(image, s);
      const expected = [10, 40, 70, 100].map((p) => (p / 255 - 0.5) / 0.5)
        .concat([20, 50, 80, 110].map((p) => (p / 255 - 0.25) / 0.25))
        .concat([30, 60, 90, 120].map((p) => p / 255 / 2));
      values.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `element ${i}: ${v} vs ${expected[i]}`));
    });

    it('invert reads each pixel p as 255 - p before scaling: 1 - x at the default scale, in both layouts', async function () {
      const nchw = await tensorOf(image, spec(['N', 3, 2, 2], { invert: true }));
      const expected = [10, 40, 70, 100, 20, 50, 80, 110, 30, 60, 90, 120].map((p) => 1 - p / 255);
      nchw.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `NCHW element ${i}: ${v} vs ${expected[i]}`));
      const nhwc = await tensorOf(image, spec(['N', 2, 2, 3], { invert: true, scale: 1, mean: 5, std: 2 }));
      nhwc.forEach((v, i) => assert.ok(Math.abs(v - (255 - PIXELS[i] - 5) / 2) < 1e-6, `NHWC element ${i}: ${v}`));
      const { tensor } = await imageToTensor(testAllocator(), image, spec(['N', 2, 2, 3], { invert: true }, 'uint8'));
      assert.deepEqual(Array.from(tensor.data as Uint8Array), PIXELS.map((p) => 255 - p));
    });

    it('writes uint8 tensors with the raw pixel values', async function () {
      const { tensor } = await imageToTensor(testAllocator(), image, spec(['N', 2, 2, 3], {}, 'uint8'));
      assert.ok(tensor.data instanceof Uint8Array);
      assert.deepEqual(Array.from(tensor.data), PIXELS);
    });
  });

  describe('images', function () {
    it('converts to one grayscale channel for 1-channel models (MNIST sample, exact)', async function () {
      const file = fs.readFileSync(path.join(SAMPLES, '7010-7.png'));
      const expected = await sharp(file).grayscale().raw().toBuffer();
      const values = await tensorOf(file, spec(['N', 1, 28, 28]));
      assert.equal(values.length, 784);
      values.forEach((v, i) => assert.ok(Math.abs(v - expected[i] / 255) < 1e-7, `pixel ${i}`));
      assert.ok(values.some((v) => v > 0.9), 'the digit has bright pixels');
    });

    it('turns colour into luminance for grayscale models', async function () {
      const red = await rgbPng(1, 1, [255, 0, 0]);
      const green = await rgbPng(1, 1, [0, 255, 0]);
      const [r] = await tensorOf(red, spec(['N', 1, 1, 1], { scale: 1 }));
      const [g] = await tensorOf(green, spec(['N', 1, 1, 1], { scale: 1 }));
      // Green carries most of the luminance, red much less; neither is 0 or 255.
      assert.ok(g > r && r > 0 && g < 255, `red ${r}, green ${g}`);
    });

    it('honours EXIF orientation (JPEG rotated 90 degrees by its orientation tag)', async function () {
      // Stored 8 wide x 4 high: left half red, right half blue; orientation 6 = rotate 90 clockwise.
      const w = 8;
      const h = 4;
      const rgb: number[] = [];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.push(...(x < w / 2 ? [255, 0, 0] : [0, 0, 255]));
      const jpeg = await sharp(Buffer.from(rgb), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
      assert.equal((await sharp(jpeg).metadata()).orientation, 6);

      const s = spec(['N', 3, 8, 4], { scale: 1 }); // upright: 4 wide, 8 high
      const { tensor, geometry } = await imageToTensor(testAllocator(), jpeg, s);
      assert.equal(geometry.sourceWidth, 4);
      assert.equal(geometry.sourceHeight, 8);
      const data = tensor.data as Float32Array;
      const redAt = (x: number, y: number) => data[0 * 32 + y * 4 + x];
      const blueAt = (x: number, y: number) => data[2 * 32 + y * 4 + x];
      // After turning upright the red half is on top and the blue half at the bottom.
      for (let x = 0; x < 4; x++) {
        assert.ok(redAt(x, 0) > 200 && blueAt(x, 0) < 60, `top row x=${x}: red ${redAt(x, 0)} blue ${blueAt(x, 0)}`);
        assert.ok(redAt(x, 7) < 60 && blueAt(x, 7) > 200, `bottom row x=${x}: red ${redAt(x, 7)} blue ${blueAt(x, 7)}`);
      }
    });

    it('refuses an oversized image before decoding, saying the limit and the size', async function () {
      const big = await solid(1200, 1000, 128);
      const s = spec(['N', 3, 8, 8], { maxInputPixels: 1_000_000 });
      await assert.rejects(decodeImage(big, s), (err: Error) => {
        assert.ok(err instanceof InputError);
        assert.match(err.message, /1200x1000 = 1200000 pixels/);
        assert.match(err.message, /limit of 1000000/);
        return true;
      });
      // Under the limit the same image decodes.
      const ok = await decodeImage(big, spec(['N', 3, 8, 8], { maxInputPixels: 1_200_000 }));
      assert.equal(ok.pixels.length, 8 * 8 * 3);
    });

    it('letterbox keeps the aspect ratio, pads with the pad value and records scale and offset', async function () {
      const white = await solid(100, 50, 255);
      const s = spec(['N', 1, 40, 40], { resize: 'letterbox', padValue: 0, scale: 1 });
      const { tensor, geometry } = await imageToTensor(testAllocator(), white, s);
      assert.deepEqual(geometry, { mode: 'letterbox', sourceWidth: 100, sourceHeight: 50, width: 40, height: 40, scaleX: 0.4, scaleY: 0.4, offsetX: 0, offsetY: 10 });
      const data = tensor.data as Float32Array;
      const row = (y: number) => Array.from(data.subarray(y * 40, y * 40 + 40));
      for (const y of [0, 9, 30, 39]) assert.ok(row(y).every((v) => v === 0), `padding row ${y}`);
      for (const y of [10, 20, 29]) assert.ok(row(y).every((v) => v === 255), `image row ${y}`);
      assert.deepEqual(toSourcePoint(geometry, 20, 10), { x: 50, y: 0 });
      assert.deepEqual(toSourcePoint(geometry, 40, 30), { x: 100, y: 50 });
    });

    it('center-crop fills the size and cuts the overhang symmetrically', async function () {
      // 100x50: left half black, right half white. Scaled by 0.8 to 80x40, then 20 px cut each side.
      const rgb: number[] = [];
      for (let y = 0; y < 50; y++) for (let x = 0; x < 100; x++) rgb.push(...(x < 50 ? [0, 0, 0] : [255, 255, 255]));
      const image = await rgbPng(100, 50, rgb);
      const s = spec(['N', 1, 40, 40], { resize: 'center-crop', scale: 1 });
      const { tensor, geometry } = await imageToTensor(testAllocator(), image, s);
      assert.deepEqual(geometry, { mode: 'center-crop', sourceWidth: 100, sourceHeight: 50, width: 40, height: 40, scaleX: 0.8, scaleY: 0.8, offsetX: -20, offsetY: 0 });
      const data = tensor.data as Float32Array;
      // The edge between black and white (source x = 50) lands at tensor x = 50 * 0.8 - 20 = 20.
      for (let y = 0; y < 40; y += 13) {
        assert.ok(data[y * 40 + 2] < 5 && data[y * 40 + 17] < 5, `row ${y} left is black`);
        assert.ok(data[y * 40 + 23] > 250 && data[y * 40 + 38] > 250, `row ${y} right is white`);
      }
      assert.deepEqual(toSourcePoint(geometry, 20, 0), { x: 50, y: 0 });
    });

    it('stretch records independent x and y scales', async function () {
      const { geometry } = await decodeImage(await solid(100, 50, 10), spec(['N', 3, 40, 40]));
      assert.deepEqual(geometry, { mode: 'stretch', sourceWidth: 100, sourceHeight: 50, width: 40, height: 40, scaleX: 0.4, scaleY: 0.8, offsetX: 0, offsetY: 0 });
    });

    it('never modifies the input Buffer', async function () {
      const image = fs.readFileSync(path.join(SAMPLES, 'large', '3124-3.jpg'));
      const before = Buffer.from(image);
      await imageToTensor(testAllocator(), image, spec(['N', 1, 28, 28], { resize: 'letterbox' }));
      await imageToTensor(testAllocator(), image, spec(['N', 3, 64, 64], { resize: 'center-crop', channelOrder: 'BGR' }));
      assert.ok(image.equals(before));
    });

    it('says what arrived for bytes that are not an image, a truncated JPEG and an unsupported format', async function () {
      const s = spec(['N', 1, 28, 28]);
      await assert.rejects(decodeImage(Buffer.from('definitely not an image'), s), /expected an encoded JPEG, PNG or WebP image; got 23 bytes \(starting 64 65 66/);
      // Noise compresses badly, so half the file keeps the header and loses half the scan data.
      const noise = Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251));
      const jpeg = await sharp(noise, { raw: { width: 64, height: 64, channels: 3 } }).jpeg().toBuffer();
      await assert.rejects(decodeImage(jpeg.subarray(0, jpeg.length >> 1), s), /jpeg image \(64x64, \d+ bytes\) could not be decoded.*truncated or corrupt/);
      const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).gif().toBuffer();
      await assert.rejects(decodeImage(gif, s), /expected a JPEG, PNG or WebP image; got gif/);
    });
  });

  describe('prepareInput', function () {
    const mnist = modelInfo([input(['N', 1, 28, 28], 'float32', 'image')]);
    const mnistSpec = resolveImageSpec(mnist.inputs[0]);

    it('passes a typed-array tensor of the right type through without copying it', async function () {
      const alloc = testAllocator();
      const data = new Float32Array(784).fill(0.5);
      const prepared = await prepareInput(alloc, mnist, { data, dims: [1, 1, 28, 28] }, { image: mnistSpec });
      assert.equal(prepared.feeds.image.data, data);
      assert.equal(alloc.allocated.length, 0);
      assert.equal(prepared.batchSize, 1);
      assert.equal(prepared.fromArray, false);
    });

    it('converts a plain number array into a typed tensor of the model type', async function () {
      const alloc = testAllocator();
      const values = Array.from({ length: 784 }, (_, i) => i / 784);
      const prepared = await prepareInput(alloc, mnist, { data: values, dims: [1, 1, 28, 28], type: 'float32' }, { image: mnistSpec });
      const feed = prepared.feeds.image;
      assert.ok(feed.data instanceof Float32Array);
      assert.equal(feed.data, alloc.allocated[0].data);
      assert.ok(Math.abs((feed.data as Float32Array)[783] - 783 / 784) < 1e-6);
      assert.deepEqual(feed.dims, [1, 1, 28, 28]);
    });

    it('refuses tensors that do not fit, saying expected and arrived', async function () {
      const alloc = testAllocator();
      const prep = (payload: unknown) => prepareInput(alloc, mnist, payload, { image: mnistSpec });
      await assert.rejects(prep({ data: new Float32Array(756), dims: [1, 1, 27, 28] }), /dims \[1, 1, 27, 28\] do not fit input 'image' float32\[N, 1, 28, 28\]: dim 2 is 27, expected 28/);
      await assert.rejects(prep({ data: new Float32Array(784), dims: [1, 28, 28] }), /have 3 dims; input 'image' .* needs 4/);
      await assert.rejects(prep({ data: new Int32Array(784), dims: [1, 1, 28, 28] }), /data must be Float32Array or a plain number array .* got Int32Array\(784\)/);
      await assert.rejects(prep({ data: new Float32Array(700), dims: [1, 1, 28, 28] }), /need 784 elements, msg.payload.data has 700/);
      await assert.rejects(prep({ data: new Float32Array(784), dims: [1, 1, 28, 28], type: 'uint8' }), /type is "uint8", but input 'image' .* takes float32/);
      await assert.rejects(prep({ data: new Float32Array(784), dims: [1, 1, 28.5, 28] }), /dims must be an array of positive integers/);
      const values: unknown[] = new Array(784).fill(0);
      values[5] = 'x';
      await assert.rejects(prep({ data: values, dims: [1, 1, 28, 28] }), /msg.payload.data\[5\] must be a number, got a string/);
      assert.equal(alloc.allocated.length, alloc.released.length, 'every tensor taken was given back');
    });

    it('refuses payloads of the wrong kind, describing them', async function () {
      const prep = (payload: unknown) => prepareInput(testAllocator(), mnist, payload, { image: mnistSpec });
      await assert.rejects(prep('hello'), /expected msg.payload to be an encoded image Buffer \(JPEG, PNG, WebP\), raw pixels \{data, width, height, channels\}, a tensor \{data, dims, type\} or an array of these; got a string of 5 characters/);
      await assert.rejects(prep(42), /got number 42/);
      await assert.rejects(prep([]), /got an empty array/);
      await assert.rejects(prep([1, 2, 3]), /array of numbers; wrap it as a tensor \{data: \[...\], dims: \[1, 1, 28, 28\]\}/);
      await assert.rejects(prep({ values: [1] }), /got an object with keys \[values\]/);
    });

    it('batches an array of images and tensors in order into one tensor', async function () {
      const alloc = testAllocator();
      const a = fs.readFileSync(path.join(SAMPLES, '0003-0.png'));
      const b = fs.readFileSync(path.join(SAMPLES, 'large', '1002-1.jpg'));
      const t = { data: new Float32Array(784).fill(0.25), dims: [1, 1, 28, 28] };
      const prepared = await prepareInput(alloc, mnist, [a, t, b], { image: mnistSpec });
      assert.equal(prepared.batchSize, 3);
      assert.equal(prepared.fromArray, true);
      const feed = prepared.feeds.image;
      assert.deepEqual(feed.dims, [3, 1, 28, 28]);
      const data = feed.data as Float32Array;
      const first = await tensorOf(a, mnistSpec);
      assert.deepEqual(Array.from(data.subarray(0, 784)), first);
      assert.ok(data.subarray(784, 1568).every((v) => v === 0.25));
      assert.deepEqual(Array.from(data.subarray(1568)), await tensorOf(b, mnistSpec));
      assert.equal(prepared.geometry[1], null);
      assert.equal(prepared.geometry[2]?.sourceWidth, 112);
      releaseInput(alloc, prepared);
      assert.deepEqual(alloc.released, [feed]);
    });

    it('refuses arrays that cannot form one batch', async function () {
      const dynamic = modelInfo([input(['N', 'L'], 'float32', 'seq')]);
      const noImages = new ConfigError('images need a 4-D model input');
      const prep = (info: ReturnType<typeof modelInfo>, payload: unknown, maxBatch?: number) => prepareInput(testAllocator(), info, payload, { image: noImages, maxBatch });
      await assert.rejects(prep(dynamic, [{ data: [1, 2, 3, 4], dims: [1, 4] }, { data: [1, 2, 3, 4, 5], dims: [1, 5] }]), /item 0 gives float32\[N, 4\], item 1 gives float32\[N, 5\]/);
      await assert.rejects(prep(dynamic, [{ data: [1], dims: [1, 1] }, { data: [1], dims: [1, 1] }, { data: [1], dims: [1, 1] }], 2), /array of 3; at most 2 items fit one batch/);
      const fixed = modelInfo([input([1, 4], 'float32', 'x')]);
      await assert.rejects(prep(fixed, [{ data: [1, 2, 3, 4], dims: [1, 4] }, { data: [1, 2, 3, 4], dims: [1, 4] }]), /fixed batch of 1; got 2 rows; send one image or tensor per message/);
      await assert.rejects(prep(dynamic, Buffer.from([0xff, 0xd8])), /cannot take images: images need a 4-D model input/);
    });

    it('names the failing item of an array and takes nothing from the pool', async function () {
      const alloc = testAllocator();
      const good = fs.readFileSync(path.join(SAMPLES, '0003-0.png'));
      await assert.rejects(prepareInput(alloc, mnist, [good, good, Buffer.from('nope')], { image: mnistSpec }), /msg.payload\[2\]: expected an encoded JPEG, PNG or WebP image/);
      assert.equal(alloc.allocated.length, 0);
    });

    it('feeds only single-input models', async function () {
      const two = modelInfo([input(['N', 4], 'float32', 'a'), input(['N', 4], 'float32', 'b')]);
      await assert.rejects(prepareInput(testAllocator(), two, { data: [1, 2, 3, 4], dims: [1, 4] }, { image: new Error('no') }), /the model has 2 inputs \(a, b\)/);
    });
  });
});
