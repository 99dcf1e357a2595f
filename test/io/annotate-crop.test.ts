import { strict as assert } from 'assert';
import sharp from 'sharp';
import { annotateImage, annotationSvg } from '../../src/engine/io/annotate';
import { cropRegion, cropRegions } from '../../src/engine/io/crop';
import { decodeImage, resolveImageSpec, prepareInput, type RawImage, type TensorAllocator } from '../../src/engine/io/preprocess';
import type { TensorData, TensorType } from '../../src/engine/tensor';
import { typedArrayCtor } from '../../src/engine/tensor';

/** A grey image with a pattern, so crops can be checked pixel by pixel. */
async function pattern(width: number, height: number): Promise<{ png: Buffer; raw: Buffer }> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = x % 256;
      raw[i + 1] = y % 256;
      raw[i + 2] = 77;
    }
  }
  const png = await sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, raw };
}

const allocator: TensorAllocator = {
  allocateTensor: (type: TensorType, dims: number[]): TensorData => ({ type, dims, data: new (typedArrayCtor(type))(dims.reduce((a, b) => a * b, 1)) }),
  releaseTensor: () => undefined,
};

describe('io/annotate and io/crop', function () {
  describe('annotateImage', function () {
    it('returns a JPEG of the input size whose pixels change on the box edges and stay put far from them', async function () {
      const png = await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer();
      const jpeg = await annotateImage(png, [{ box: { x: 40, y: 40, w: 60, h: 50 }, label: 'cat', score: 0.9, classIndex: 2 }], { lineWidth: 4, scores: true });
      const meta = await sharp(jpeg).metadata();
      assert.equal(meta.format, 'jpeg');
      assert.deepEqual([meta.width, meta.height], [160, 120]);
      const { data } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
      const at = (x: number, y: number) => data.subarray((y * 160 + x) * 3, (y * 160 + x) * 3 + 3);
      const bright = (p: Uint8Array) => p[0] + p[1] + p[2] > 150;
      // On the left edge (x = 40), the middle of the bottom edge (y = 90) and the right edge.
      assert.ok(bright(at(40, 65)) && bright(at(70, 90)) && bright(at(100, 65)), 'box edges drawn');
      // The inside of the box and a far corner stay black (JPEG noise aside).
      assert.ok(!bright(at(70, 65)) && !bright(at(150, 110)), 'inside and outside untouched');
      // The label tag sits above the box.
      assert.ok(bright(at(45, 35)), 'label tag drawn above the box');
    });

    it('escapes label text and skips boxes that are not numbers', function () {
      const svg = annotationSvg(10, 10, [{ box: { x: 1, y: 1, w: 2, h: 2 }, label: '<a&b>' }, { box: { x: NaN, y: 0, w: 1, h: 1 } }]);
      assert.match(svg, /&lt;a&amp;b&gt;/);
      assert.equal((svg.match(/<rect/g) ?? []).length, 2); // one box + one tag
    });

    it('draws on upright pixels for an EXIF-rotated JPEG (boxes are in upright coordinates)', async function () {
      // Stored 80x40 with orientation 6 (90 degrees clockwise): upright it is 40x80.
      const jpeg = await sharp({ create: { width: 80, height: 40, channels: 3, background: { r: 0, g: 0, b: 0 } } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
      const out = await annotateImage(jpeg, [{ box: { x: 5, y: 5, w: 20, h: 60 } }], { lineWidth: 2 });
      const meta = await sharp(out).metadata();
      assert.deepEqual([meta.width, meta.height], [40, 80]);
      // The box's left edge at x = 5 runs down the upright image (rows 5..65), not along the stored one.
      const { data } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
      const bright = (x: number, y: number) => data[(y * 40 + x) * 3] + data[(y * 40 + x) * 3 + 1] + data[(y * 40 + x) * 3 + 2] > 150;
      assert.ok(bright(5, 60) && bright(5, 30), 'left edge drawn in upright coordinates');
      assert.ok(!bright(35, 75), 'outside the box untouched');
    });
  });

  describe('cropRegions', function () {
    it('cuts each box out of the decoded pixels with the right size and content', async function () {
      const { png } = await pattern(200, 100);
      const { crops, regions, index } = await cropRegions(png, [{ box: { x: 10, y: 20, w: 30, h: 15 } }, { box: { x: 150.4, y: 60.6, w: 20.2, h: 10 } }]);
      assert.deepEqual(crops.map((c) => [c.width, c.height, c.channels, c.data.length]), [[30, 15, 3, 30 * 15 * 3], [21, 11, 3, 21 * 11 * 3]]);
      assert.deepEqual(regions[1], { x: 150, y: 60, w: 21, h: 11 }); // rounded outwards
      assert.deepEqual(index, [0, 1]);
      // Top-left pixel of crop 0 is source (10, 20); bottom-right is (39, 34).
      assert.deepEqual([...crops[0].data.subarray(0, 3)], [10, 20, 77]);
      const last = crops[0].data.length - 3;
      assert.deepEqual([...crops[0].data.subarray(last, last + 3)], [39, 34, 77]);
    });

    it('pads, clips to the image, skips empty boxes and stops at maxCrops', async function () {
      const { png } = await pattern(100, 100);
      assert.deepEqual(cropRegion({ x: 90, y: -5, w: 20, h: 20 }, 100, 100), { x: 90, y: 0, w: 10, h: 15 });
      assert.deepEqual(cropRegion({ x: 10, y: 10, w: 20, h: 10 }, 100, 100, 0.1), { x: 8, y: 9, w: 24, h: 12 });
      assert.equal(cropRegion({ x: 200, y: 10, w: 5, h: 5 }, 100, 100), undefined);
      const boxes = [{ box: { x: 200, y: 0, w: 5, h: 5 } }, { box: { x: 0, y: 0, w: 5, h: 5 } }, { box: { x: 10, y: 10, w: 5, h: 5 } }, { box: { x: 20, y: 20, w: 5, h: 5 } }];
      const { crops, index } = await cropRegions(png, boxes, { maxCrops: 2 });
      assert.equal(crops.length, 2);
      assert.deepEqual(index, [1, 2]);
      assert.deepEqual(await cropRegions(png, []), { crops: [], regions: [], index: [] });
    });

    it('refuses a bad padding with what it accepts', async function () {
      const { png } = await pattern(10, 10);
      await assert.rejects(cropRegions(png, [{ box: { x: 0, y: 0, w: 5, h: 5 } }], { padding: 3 }), /padding must be a fraction from 0 to 1, got 3/);
    });
  });

  describe('raw pixels as preprocessing input', function () {
    it('a crop feeds preprocessing exactly as the same pixels encoded as PNG do', async function () {
      const { png } = await pattern(64, 48);
      const { crops } = await cropRegions(png, [{ box: { x: 8, y: 4, w: 40, h: 30 } }]);
      const asPng = await sharp(crops[0].data, { raw: { width: 40, height: 30, channels: 3 } }).png().toBuffer();
      const spec = resolveImageSpec({ name: 'image', type: 'float32', dims: [1, 3, 24, 32] }, { resize: 'letterbox' });
      const fromRaw = await decodeImage(crops[0], spec);
      const fromPng = await decodeImage(asPng, spec);
      assert.deepEqual(fromRaw.geometry, fromPng.geometry);
      assert.ok(fromRaw.pixels.equals(fromPng.pixels));
    });

    it('an array of crops of different sizes becomes one batch, and grayscale raw pixels fill a colour input', async function () {
      const gray: RawImage = { data: new Uint8Array(6 * 4).fill(200), width: 6, height: 4, channels: 1 };
      const { png } = await pattern(20, 20);
      const { crops } = await cropRegions(png, [{ box: { x: 0, y: 0, w: 8, h: 8 } }, { box: { x: 2, y: 2, w: 15, h: 5 } }]);
      const info = { inputs: [{ name: 'image', type: 'float32' as const, dims: ['N', 3, 8, 8] }], outputs: [] } as unknown as Parameters<typeof prepareInput>[1];
      const spec = resolveImageSpec(info.inputs[0]);
      const prepared = await prepareInput(allocator, info, [...crops, gray], { image: spec });
      assert.equal(prepared.batchSize, 3);
      assert.deepEqual(prepared.feeds.image.dims, [3, 3, 8, 8]);
      assert.deepEqual(prepared.geometry.map((g) => [g!.sourceWidth, g!.sourceHeight]), [[8, 8], [15, 5], [6, 4]]);
      // The gray crop: every channel 200/255.
      const row2 = prepared.feeds.image.data.subarray(2 * 192, 3 * 192) as Float32Array;
      assert.ok(row2.every((v) => Math.abs(v - 200 / 255) < 1e-6));
    });

    it('refuses raw pixels whose size and data disagree, saying what was expected', async function () {
      const spec = resolveImageSpec({ name: 'image', type: 'float32', dims: [1, 1, 4, 4] });
      await assert.rejects(decodeImage({ data: new Uint8Array(10), width: 4, height: 4, channels: 1 }, spec), /raw pixels 4x4x1 need a Buffer or Uint8Array of 16 bytes; got Uint8Array\(10\)/);
      await assert.rejects(decodeImage({ data: new Uint8Array(16), width: 4, height: 4, channels: 5 as 1 }, spec), /channels 1\.\.4/);
    });
  });
});
