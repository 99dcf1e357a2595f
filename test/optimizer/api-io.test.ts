import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { readModelInfo } from '../../src/engine/graph/model-info';
import {
  GraphOptimizer,
  NCS2PerformanceOptimizer,
  NpyFormatError,
  OptimizeOptionsError,
  formatReport,
  readNpy,
  writeModelAtomic,
  writeNpyFloat32,
} from '../../src/engine/graph/optimizer';
import { MNIST_MODEL, loadMnist, tmpDir } from './helpers';

/** Builds a .npy with any header dict and raw payload (for formats writeNpyFloat32 does not write). */
function npy(major: number, dict: string, payload: Uint8Array): Uint8Array {
  const lenBytes = major === 1 ? 2 : 4;
  const header = dict + '\n';
  const out = new Uint8Array(8 + lenBytes + header.length + payload.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[8 + lenBytes + i] = header.charCodeAt(i);
  out.set(payload, 8 + lenBytes + header.length);
  return out;
}

describe('optimizer: seed API, .npy reader, atomic writes', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(() => (dir = tmpDir('opt-api-')));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('GraphOptimizer.optimizeGraph / quantizeToInt8 write the optimized model and return the report', async function () {
    const fp16Path = path.join(dir, 'fp16.onnx');
    const report = await GraphOptimizer.optimizeGraph(MNIST_MODEL, fp16Path, { useFp16: true, enableBatching: true, optimalBatchSize: 8 });
    assert.equal(report.precision, 'fp16');
    assert.equal(readModelInfo(fs.readFileSync(fp16Path)).precision, 'fp16');
    const int8Path = path.join(dir, 'int8.onnx');
    const q = await GraphOptimizer.quantizeToInt8(MNIST_MODEL, loadMnist().calibration.slice(0, 50), int8Path);
    assert.equal(q.calibration?.samples, 50);
    assert.equal(readModelInfo(fs.readFileSync(int8Path)).precision, 'int8');
    await assert.rejects(GraphOptimizer.optimizeGraph(MNIST_MODEL, int8Path, { useInt8: true, useFp16: true }), /choose one/);
    await assert.rejects(GraphOptimizer.optimizeGraph(MNIST_MODEL, int8Path, { useInt8: true }), /needs calibration data/);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['fp16.onnx', 'int8.onnx'], 'no temporary files are left');
    const text = formatReport(q);
    assert.match(text, /quantized: 10 nodes \(4 compute, 3 fused-activation, 3 data-movement\)/);
    assert.match(text, /Conv +\/conv1\/Conv \[compute\]/);
  });

  it('NCS2PerformanceOptimizer makes FP16 and refuses INT8 with the reason', async function () {
    const out = path.join(dir, 'ncs2.onnx');
    const report = await new NCS2PerformanceOptimizer({}).optimizeModel(MNIST_MODEL, out);
    assert.equal(report.target, 'ncs2');
    assert.equal(report.precision, 'fp16');
    assert.equal(readModelInfo(fs.readFileSync(out)).precision, 'fp16');
    await assert.rejects(new NCS2PerformanceOptimizer({ useInt8: true }).optimizeModel(MNIST_MODEL, out), (err: unknown) => {
      assert.ok(err instanceof OptimizeOptionsError);
      assert.match(err.message, /FP16 only.*Unsupported Layer Type FakeQuantize/);
      return true;
    });
  });

  it('writeModelAtomic replaces a file whole, and on failure leaves neither a partial file nor a temporary one', async function () {
    const target = path.join(dir, 'model.onnx');
    await writeModelAtomic(target, new Uint8Array([1, 2, 3]));
    await writeModelAtomic(target, new Uint8Array(100_000).fill(7));
    assert.equal(fs.readFileSync(target).length, 100_000);
    // A directory in the way makes the final rename fail: the temporary file must go.
    const blocked = path.join(dir, 'blocked.onnx');
    fs.mkdirSync(blocked);
    fs.writeFileSync(path.join(blocked, 'keep'), 'x');
    await assert.rejects(writeModelAtomic(blocked, new Uint8Array(10)));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['blocked.onnx', 'model.onnx']);
    await assert.rejects(writeModelAtomic(path.join(dir, 'missing', 'm.onnx'), new Uint8Array(1)), /ENOENT/);
    // An input path that cannot be read is reported as such, and the output is not touched.
    await assert.rejects(GraphOptimizer.optimizeGraph(path.join(dir, 'none.onnx'), target, { useFp16: true }), /cannot read model/);
    assert.equal(fs.readFileSync(target).length, 100_000);
  });

  it('reads .npy versions 1-3, big-endian and integer dtypes; refuses Fortran order, bad magic and truncation', function () {
    const f32 = Float32Array.from([1.5, -2, 3.25, 0]);
    const back = readNpy(writeNpyFloat32([2, 2], f32));
    assert.deepEqual(back.shape, [2, 2]);
    assert.deepEqual(Array.from(back.data), [1.5, -2, 3.25, 0]);
    assert.equal((writeNpyFloat32([3], new Float32Array(3)).length - 12) % 64, 0, 'header padded to 64 bytes');

    const be = new Uint8Array(8);
    new DataView(be.buffer).setFloat32(0, 0.5, false);
    new DataView(be.buffer).setFloat32(4, -8, false);
    assert.deepEqual(Array.from(readNpy(npy(2, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be)).data), [0.5, -8]);
    const u8 = readNpy(npy(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3), }", Uint8Array.from([0, 128, 255])));
    assert.equal(u8.dtype, 'uint8');
    assert.deepEqual(Array.from(u8.data), [0, 128, 255]);
    const f64 = new Uint8Array(new Float64Array([0.25]).buffer);
    assert.deepEqual(Array.from(readNpy(npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", f64)).data), [0.25]);

    assert.throws(() => readNpy(npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", new Uint8Array(4))), /Fortran/);
    assert.throws(() => readNpy(new Uint8Array(20)), (e: unknown) => e instanceof NpyFormatError && /not a .npy file/.test(e.message));
    assert.throws(() => readNpy(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", new Uint8Array(8))), /truncated: shape \(4\) of float32 needs 16 data bytes, the file has 8/);
    assert.throws(() => readNpy(npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8))), /dtype '<c8'/);
  });
});
