import { strict as assert } from 'assert';
import sharp from 'sharp';
import { applyResultExtras, type RegionItem } from '../../nodes/lib/result-extras';
import type { RawImage } from '../../src/engine/io/preprocess';
import type { NodeMessage } from '../../nodes/lib/red';

const box = (x: number, y: number, w: number, h: number, label: string) => ({ label, classIndex: Number(label), score: 0.9, box: { x, y, w, h } });

describe('nodes/lib/result-extras (annotate and crop regions without Node-RED)', function () {
  let frames: Buffer[];

  before(async function () {
    frames = await Promise.all([
      sharp({ create: { width: 100, height: 80, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer(),
      sharp({ create: { width: 60, height: 40, channels: 3, background: { r: 0, g: 0, b: 0 } } }).jpeg().toBuffer(),
    ]);
  });

  it('array input: one annotated JPEG per image, crops of every image in one array, regions saying which image', async function () {
    const msg: NodeMessage = { payload: [[box(10, 10, 20, 30, '1'), box(50, 5, 10, 10, '2')], [box(0, 0, 30, 20, '3')]] };
    await applyResultExtras({ annotate: true, crop: { padding: 0 } }, msg, frames);
    const annotated = msg.annotated as Buffer[];
    const sizes = await Promise.all(annotated.map(async (j) => sharp(j).metadata()));
    assert.deepEqual(sizes.map((m) => [m.format, m.width, m.height]), [['jpeg', 100, 80], ['jpeg', 60, 40]]);
    const crops = msg.payload as RawImage[];
    const regions = msg.regions as RegionItem[];
    assert.deepEqual(crops.map((c) => [c.width, c.height]), [[20, 30], [10, 10], [30, 20]]);
    assert.deepEqual(regions.map((r) => [r.label, r.image, r.region]), [
      ['1', 0, { x: 10, y: 10, w: 20, h: 30 }],
      ['2', 0, { x: 50, y: 5, w: 10, h: 10 }],
      ['3', 1, { x: 0, y: 0, w: 30, h: 20 }],
    ]);
  });

  it('a single image with no boxes: no crops, an empty regions list, and the image annotated as it is', async function () {
    const msg: NodeMessage = { payload: [] };
    await applyResultExtras({ annotate: true, crop: { padding: 0.1 } }, msg, frames[0]);
    assert.deepEqual(msg.payload, []);
    assert.deepEqual(msg.regions, []);
    assert.equal((await sharp(msg.annotated as Buffer).metadata()).width, 100);
  });

  it('says why when the input is a tensor or the result has no boxes', async function () {
    await assert.rejects(applyResultExtras({ annotate: true, crop: false }, { payload: [] }, { data: [0], dims: [1, 1] }), /need image input .* tensors carry no image/);
    await assert.rejects(applyResultExtras({ annotate: false, crop: { padding: 0 } }, { payload: { index: 1, label: '1', score: 1, top: [] } }, frames[0]), /need a result with boxes/);
  });

  it('does nothing when both are off', async function () {
    const msg: NodeMessage = { payload: 'result' };
    await applyResultExtras({ annotate: false, crop: false }, msg, 'anything');
    assert.deepEqual(msg, { payload: 'result' });
  });
});
