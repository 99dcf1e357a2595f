import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InputError, ModelLoadError } from '../../src/engine/errors';
import type { ModelInfo, TensorInfo } from '../../src/engine/graph/model-info';
import { DataType, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { buildMlp } from '../../src/engine/graph/builder';
import { createDevice } from '../../src/engine/devices/factory';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { validateFeeds, validateSubmitOptions } from '../../src/engine/pipeline/validate';
import { prepareInput, resolveImageSpec } from '../../src/engine/io/preprocess';
import { loadLabels } from '../../src/engine/io/postprocess';
import { loadCharset } from '../../src/engine/io/ocr';
import { MAX_TEXT_FILE_BYTES } from '../../src/engine/io/text-file';
import { MAX_TENSOR_BYTES, elementCount, showValue, typedArrayCtor, type TensorData, type TensorType } from '../../src/engine/tensor';

function info(inputs: TensorInfo[], outputs: TensorInfo[] = [{ name: 'y', type: 'float32', dims: ['N', 2] }]): ModelInfo {
  return { inputs, outputs, opsetVersion: 17, irVersion: 8, producer: 'test', nodeCount: 1, opTypes: {}, weightBytes: 0, precision: 'fp32' };
}

const X: TensorInfo = { name: 'x', type: 'float32', dims: ['N', 4] };
const allocator = {
  allocateTensor: (type: TensorType, dims: number[]): TensorData => ({ type, dims, data: new (typedArrayCtor(type))(elementCount(dims)) }),
  releaseTensor: () => undefined,
};

/** Asserts the error class and that the message matches (and is not a bare runtime TypeError). */
async function failsWith(run: () => unknown, type: new (...args: never[]) => Error, pattern: RegExp): Promise<void> {
  let error: unknown;
  try {
    await run();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
  assert.match((error as Error).message, pattern);
}

describe('inputs that used to give unclear errors', function () {
  it('showValue writes what arrived even when JSON cannot (circular, NaN, BigInt, long values)', function () {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.equal(showValue(circular), 'an object with keys [self] that cannot be written as JSON (it refers to itself)');
    assert.equal(showValue(NaN), 'NaN');
    assert.equal(showValue(-Infinity), '-Infinity');
    assert.equal(showValue([1n, 2]), '["1n",2]');
    assert.equal(showValue('x'.repeat(100)), `"${'x'.repeat(79)}...`);
    assert.equal(showValue(undefined), 'undefined');
  });

  it('a circular {data, dims} names the field instead of a JSON TypeError, in the engine and in preprocessing', async function () {
    const dims: unknown[] = [1];
    dims.push(dims);
    await failsWith(() => validateFeeds(info([X]), { x: { type: 'float32', dims: dims as number[], data: new Float32Array(4) } }), InputError, /^input 'x': dims must be positive integers, got an array of 2 that cannot be written as JSON \(it refers to itself\)$/);
    const payload: Record<string, unknown> = { data: [1, 2, 3, 4] };
    payload.dims = payload;
    await failsWith(() => prepareInput(allocator, info([X]), payload, { image: new Error('no images') }), InputError, /^msg\.payload\.dims must be an array of positive integers \(batch first\), e\.g\. \[1, 4\]; got an object with keys \[data, dims\] that cannot be written as JSON/);
    const typed = { data: [1, 2, 3, 4], dims: [1, 4], type: {} as Record<string, unknown> };
    typed.type.self = typed.type;
    await failsWith(() => prepareInput(allocator, info([X]), typed, { image: new Error('no images') }), InputError, /^msg\.payload\.type is an object with keys \[self\] that cannot be written as JSON .*takes float32$/);
  });

  it('an empty Buffer says it is empty and what was expected, not sharp\'s bare "Input Buffer is empty"', async function () {
    const image = resolveImageSpec({ name: 'image', type: 'float32', dims: [1, 1, 28, 28] });
    await failsWith(
      () => prepareInput(allocator, info([{ name: 'image', type: 'float32', dims: [1, 1, 28, 28] }]), Buffer.alloc(0), { image }),
      InputError,
      /^expected an encoded JPEG, PNG or WebP image; got an empty Buffer \(0 bytes\): whatever produced it \(a file read, a camera, an HTTP request\) gave nothing$/,
    );
    await failsWith(() => prepareInput(allocator, info([{ name: 'image', type: 'float32', dims: ['N', 1, 28, 28] }]), [Buffer.alloc(0)], { image }), InputError, /^msg\.payload\[0\]: expected an encoded JPEG, PNG or WebP image; got an empty Buffer \(0 bytes\)/);
  });

  it('deadlineMs must be a number of milliseconds > 0 that a timer can hold', function () {
    validateSubmitOptions({});
    validateSubmitOptions({ deadlineMs: 0.5 });
    validateSubmitOptions({ deadlineMs: 2_147_483_647 });
    for (const [bad, shown] of [[NaN, 'NaN'], [0, '0'], [-5, '-5'], [Infinity, 'Infinity'], [2 ** 31, '2147483648'], ['100', '"100"'], [null, 'null']] as const) {
      assert.throws(() => validateSubmitOptions({ deadlineMs: bad }), (e: Error) => e instanceof InputError && e.message === `deadlineMs must be a number of milliseconds > 0 and at most 2147483647 (or left out for no deadline), got ${shown}`, String(bad));
    }
  });

  it('the engine refuses a submission with deadlineMs NaN, naming it, and still runs the next one', async function () {
    this.timeout(30000);
    const engine = new InferenceEngine({ devices: [createDevice({ kind: 'cpu', workers: 1, threadsPerWorker: 1 })] });
    try {
      const graph = await engine.loadGraph(buildMlp({ inputSize: 4, hidden: [8], outputSize: 2, seed: 5 }), { name: 'deadline' });
      const feeds = () => ({ input: { type: 'float32' as const, dims: [1, 4], data: new Float32Array(4) } });
      await failsWith(() => engine.submit(graph, feeds(), { deadlineMs: NaN }), InputError, /^deadlineMs must be a number of milliseconds > 0 .* got NaN$/);
      const ok = await engine.submit(graph, feeds(), { deadlineMs: 10_000 });
      assert.ok(ok.outputs.output, 'a good deadline runs');
    } finally {
      await engine.close();
    }
  });

  it('a tensor over 1 GiB is refused before it is packed for a worker (2 GiB overflowed the packing offsets)', function () {
    // Pages of an untouched ArrayBuffer are not committed: this costs address space, not memory.
    const elements = MAX_TENSOR_BYTES / 4 + 16;
    const data = new Float32Array(elements);
    assert.throws(() => validateFeeds(info([X]), { x: { type: 'float32', dims: [elements / 4, 4], data } }), (e: Error) => e instanceof InputError && e.message === `input 'x': the tensor is ${elements * 4} bytes; at most 1073741824 (1 GiB) fit one request; split the batch`);
  });

  it('a non-object feed names the input and what arrived', function () {
    assert.throws(() => validateFeeds(info([X]), { x: 'abc' as unknown as TensorData }), /^InputError: input 'x': expected a tensor \{type, dims, data\} \(float32\[N, 4\]\), got string$/);
    assert.throws(() => validateFeeds(info([X]), { x: { type: { a: 1 }, dims: [1, 4], data: new Float32Array(4) } as unknown as TensorData }), /input 'x': expected type float32, got \{"a":1\}/);
  });

  it('labels and character lists: a pipe, /dev/zero, a folder or a file over 16 MiB is refused at once, naming the file and why', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-text-'));
    try {
      const pipe = path.join(dir, 'labels.pipe');
      execFileSync('mkfifo', [pipe]);
      const big = path.join(dir, 'big.txt');
      fs.closeSync(fs.openSync(big, 'w'));
      fs.truncateSync(big, MAX_TEXT_FILE_BYTES + 1);
      const start = Date.now();
      await failsWith(() => loadLabels(pipe), InputError, /^cannot read labels file .*labels\.pipe: it is not a regular file \(a folder, device or pipe\); expected a text file with one label per line$/);
      await failsWith(() => loadLabels('/dev/zero'), InputError, /^cannot read labels file \/dev\/zero: it is not a regular file/);
      await failsWith(() => loadCharset(dir), InputError, /^cannot read character list .*: it is not a regular file .*; expected a text file with one character per line/);
      await failsWith(() => loadLabels(big), InputError, /^cannot read labels file .*big\.txt: it is 16777217 bytes, over the 16777216 bytes \(16 MiB\) a labels file may have/);
      assert.ok(Date.now() - start < 1000, `${Date.now() - start} ms`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('a model with a string output', function () {
    const stringModel = () =>
      encodeModel(
        makeModel({
          name: 'to-text',
          node: [makeNode('Cast', ['x'], ['y'], { to: { int: DataType.STRING } })],
          initializer: [],
          input: [makeValueInfo('x', DataType.FLOAT, [1, 4])],
          output: [makeValueInfo('y', DataType.STRING, [1, 4])],
        }),
      );

    it('validateFeeds names the output and what to do', function () {
      assert.throws(() => validateFeeds(info([X], [{ name: 'labels', type: 'string', dims: ['N'] }]), { x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } }), (e: Error) => e instanceof ModelLoadError && /^the model's output 'labels' is a string tensor \(string\[N\]\); only numeric outputs \(float, int, bool\) can be run here: export the model without its string step/.test(e.message));
    });

    it('on a CPU device the task fails with that message, not "Cannot read properties of undefined (reading \'slice\')"', async function () {
      this.timeout(30000);
      const engine = new InferenceEngine({ devices: [createDevice({ kind: 'cpu', workers: 1, threadsPerWorker: 1 })] });
      try {
        const graph = await engine.loadGraph(stringModel(), { name: 'to-text' });
        await failsWith(() => engine.submit(graph, { x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } }), ModelLoadError, /^the model's output 'y' is a string tensor \(string\[1, 4\]\)/);
      } finally {
        await engine.close();
      }
    });
  });
});
