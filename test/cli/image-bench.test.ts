import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { generateFrame, loadImages, runImageBench } from '../../src/cli/image-bench';
import { resolveModel } from '../../src/cli/models';

const ROOT = path.resolve(__dirname, '../../..');
const CLI = path.resolve(__dirname, '../../src/cli/ncs2.js');
const LARGE = path.join(ROOT, 'models', 'mnist', 'samples', 'large');

describe('ncs2 bench --images (the JPEG-to-result pipeline)', function () {
  this.timeout(60_000);

  it('generated frames are 1920x1080 JPEGs that compress like photos (hundreds of KB)', async function () {
    const frame = await generateFrame(3);
    const meta = await sharp(frame).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 1920, 1080]);
    assert.ok(frame.length > 400_000 && frame.length < 2_000_000, `${frame.length} bytes`);
    assert.notDeepEqual(frame, await generateFrame(4), 'each seed gives another frame');
  });

  it('runs pipelined, sequential and the CPU-work measurement in one run, with stage statistics', async function () {
    const model = await resolveModel(path.join(ROOT, 'models', 'mnist', 'mnist-cnn.onnx'));
    const r = await runImageBench(model, { images: LARGE, count: 0, durationS: 0.6, warmupS: 0.2, parallel: 'auto', preprocessSlots: 'auto', measureMs: 250 });
    assert.equal(r.failed, 0, r.errors.join('; '));
    assert.equal(r.images.count, (await fs.readdir(LARGE)).length);
    assert.ok(r.pipelined.images > 0 && r.sequential.images > 0);
    const w = r.cpuWork;
    assert.ok(w.decodeResizeMs > 0 && w.inferMs > 0);
    assert.ok(Math.abs(w.boundImagesPerSec - (w.cores * 1000) / (w.decodeResizeMs + w.inferMs)) < 1e-9);
    assert.ok(Math.abs(r.ratios.vsCpuBound - r.pipelined.imagesPerSec / w.boundImagesPerSec) < 1e-9);
    assert.ok(Math.abs(r.ratios.vsSequential - r.pipelined.imagesPerSec / r.sequential.imagesPerSec) < 1e-9);
    assert.equal(r.targets.met.vsSequential, r.ratios.vsSequential >= 1.5);
    // the stage statistics are the pipelined window's (reset at its warm-up's end)
    assert.ok(r.stages.preprocess.completed >= r.pipelined.images);
    assert.equal(r.stages.preprocess.concurrency, r.config.preprocessSlots);
    assert.ok(r.stages.infer.serviceMs.p50 > 0 && r.stages.preprocess.serviceMs.p50 > 0);
    assert.equal(r.stages.toDevice.present, false);
    assert.equal(r.config.parallel, r.config.preprocessSlots + 2 * r.config.workers + 1);
    assert.ok(r.pipelined.eventLoopDelayMs.p99 >= 0);
  });

  it('refuses an image folder without images, naming what it expected', async function () {
    const empty = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-images-'));
    try {
      await assert.rejects(loadImages(empty, 0), /no \.jpg, \.jpeg, \.png or \.webp file in the folder; expected images or 'generated'/);
      const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(process.execPath, [CLI, 'bench', 'mlp', '--images', path.join(empty, 'missing')], { timeout: 30_000 }, (err, _out, stderr) => resolve({ code: err ? 1 : 0, stderr })),
      );
      assert.equal(run.code, 1);
      assert.match(run.stderr, /--images .*missing: cannot read the folder \(ENOENT\)/);
    } finally {
      await fs.rm(empty, { recursive: true, force: true });
    }
  });
});
