import { strict as assert } from 'assert';
import sharp from 'sharp';
import { InferenceEngine, type GraphHandle } from '../../src/engine/pipeline/engine';
import { buildMlp } from '../../src/engine/graph/builder';
import { runInference, type InferenceOutcome, type InferenceSetup } from '../../src/engine/io/infer';
import { groupable, TensorGatherer, type GatherEngine } from '../../src/engine/io/gather';
import type { TensorInput } from '../../src/engine/io/preprocess';
import type { RawOutput } from '../../src/engine/io/postprocess';

const FEATURES = 16;

function tensor(seed: number, rows = 1): { data: Float32Array; dims: number[]; type: 'float32' } {
  return { data: new Float32Array(rows * FEATURES).map((_, i) => Math.sin(seed * 31 + i)), dims: [rows, FEATURES], type: 'float32' };
}

function outputOf(outcome: InferenceOutcome | Error): Float32Array {
  if (outcome instanceof Error) throw outcome;
  const outputs = outcome.payload as Record<string, RawOutput>;
  return Object.values(outputs)[0].data as Float32Array;
}

/** Adds every payload in one turn of the event loop; resolves with each one's outcome, in request order. */
function gatherAll(engine: GatherEngine, setup: InferenceSetup, payloads: unknown[]): Promise<Array<InferenceOutcome | Error>> {
  return new Promise((resolve) => {
    const outcomes: Array<InferenceOutcome | Error> = new Array(payloads.length);
    let left = payloads.length;
    const gatherer = new TensorGatherer<number>(engine, setup, (index, outcome) => {
      assert.equal(outcomes[index], undefined, `request ${index} settled twice`);
      outcomes[index] = outcome;
      if (--left === 0) resolve(outcomes);
    });
    payloads.forEach((p, i) => gatherer.add(i, p as TensorInput, performance.now(), 0));
  });
}

describe('io/gather: single-tensor requests run as batched engine requests (TensorGatherer)', function () {
  this.timeout(30000);
  let engine: InferenceEngine;
  let batched: GraphHandle;
  let unbatched: GraphHandle;
  const setupOf = (handle: GraphHandle): InferenceSetup => ({ handle, image: new Error('tensors only'), maxBatch: 64, output: { kind: 'raw', format: 'typed' } });
  const runs = () => engine.getStats().graphs[batched.id].batching.runs;

  before(async function () {
    engine = new InferenceEngine();
    engine.acquireDevice({ kind: 'cpu', id: 'cpu-group-test', workers: 1 });
    // A fixed cap of 8 (not adaptive, which starts at 1 and grows with load).
    batched = await engine.loadGraph(buildMlp({ inputSize: FEATURES, hidden: [8], outputSize: 4, seed: 3 }), { devices: ['cpu-group-test'], batching: { adaptive: false, maxBatchSize: 8, maxDelayMs: 0 } });
    unbatched = await engine.loadGraph(buildMlp({ inputSize: FEATURES, hidden: [8], outputSize: 4, seed: 4 }), { devices: ['cpu-group-test'] });
  });

  after(async function () {
    await engine.close();
  });

  it('only single tensors on a graph with dynamic batching are grouped', async function () {
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).jpeg().toBuffer();
    assert.equal(groupable(setupOf(batched), engine, tensor(1)), true);
    assert.equal(groupable(setupOf(batched), engine, [tensor(1)]), false, 'an array payload keeps its own batch');
    assert.equal(groupable(setupOf(batched), engine, jpeg), false, 'images are decoded in the preprocess stage one by one');
    assert.equal(groupable(setupOf(unbatched), engine, tensor(1)), false, 'a graph without batching runs each message alone');
  });

  it('gives each request its own rows, in order, identical to running them one by one, in one run per cap', async function () {
    const setup = setupOf(batched);
    const payloads = [tensor(1), tensor(2, 2), tensor(3), tensor(4), tensor(5), tensor(6), tensor(7), tensor(8), tensor(9)];
    const alone: Float32Array[] = [];
    for (const p of payloads) alone.push(outputOf(await runInference(engine, setup, p)));
    const runsBefore = runs();
    const outcomes = await gatherAll(engine, setup, payloads);
    outcomes.forEach((o, i) => {
      assert.deepEqual([...outputOf(o)], [...alone[i]], `request ${i}`);
      assert.equal(outputOf(o).length, payloads[i].dims[0] * 4, `request ${i} gets its own ${payloads[i].dims[0]} row(s)`);
    });
    // 10 rows at a cap of 8: two runs (8 rows, then 2), not nine.
    assert.equal(runs() - runsBefore, 2);
    assert.deepEqual(
      outcomes.map((o) => (o as InferenceOutcome).inference.batchSize),
      [8, 8, 8, 8, 8, 8, 8, 2, 2],
    );
  });

  /** The engine, noting the rows of every request the gatherer submits. */
  const counting = (submitted: number[]): GatherEngine => ({
    submit: (graph, feeds, options) => {
      submitted.push(Object.values(feeds)[0].dims[0]);
      return engine.submit(graph, feeds, options);
    },
    allocateTensor: (type, dims) => engine.allocateTensor(type, dims),
    releaseTensor: (t) => engine.releaseTensor(t),
    narrowTensor: (t, dims) => engine.narrowTensor(t, dims),
    batchCap: (g) => engine.batchCap(g),
  });

  it('a batch leaves as soon as it holds the cap, before the turn ends; a request that does not fit starts the next one', async function () {
    const submitted: number[] = [];
    const settled: number[] = [];
    const gatherer = new TensorGatherer<number>(counting(submitted), setupOf(batched), (i) => settled.push(i));
    // 3 + 3 rows, then 3 more do not fit the cap of 8: the first 6 leave at once.
    [tensor(1, 3), tensor(2, 3), tensor(3, 3)].forEach((p, i) => gatherer.add(i, p, performance.now(), 0));
    assert.deepEqual(submitted, [6], 'the full batch left within the turn');
    assert.equal(gatherer.pending, 1);
    // Six single rows fill the open batch (3 + 5 = 8) and it leaves; the last one waits for the turn's end.
    for (let i = 3; i < 9; i++) gatherer.add(i, tensor(i), performance.now(), 0);
    assert.deepEqual(submitted, [6, 8]);
    assert.equal(gatherer.pending, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(submitted, [6, 8, 1], 'the rest left at the end of the turn');
    while (settled.length < 9) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual([...settled].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a batch of large rows starts with room for a few and grows up to the cap, its rows intact', async function () {
    const setup = setupOf(batched);
    const payloads = Array.from({ length: 7 }, (_, i) => tensor(20 + i));
    const alone: Float32Array[] = [];
    for (const p of payloads) alone.push(outputOf(await runInference(engine, setup, p)));
    const submitted: number[] = [];
    const outcomes: Array<InferenceOutcome | Error> = [];
    // Room for 2 rows of 64 bytes up front: the batch grows to 4, then 8 (the cap) as rows come.
    const gatherer = new TensorGatherer<number>(counting(submitted), setup, (i, o) => (outcomes[i] = o), 128);
    payloads.forEach((p, i) => gatherer.add(i, p, performance.now(), 0));
    assert.deepEqual(submitted, [], 'seven rows under the cap of 8 wait for the end of the turn');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(submitted, [7], 'one run, not one per grown buffer');
    while (outcomes.filter(Boolean).length < 7) await new Promise((resolve) => setTimeout(resolve, 5));
    outcomes.forEach((o, i) => assert.deepEqual([...outputOf(o)], [...alone[i]], `request ${i}`));
  });

  it('a bad request fails alone with its own error; plain number arrays are converted', async function () {
    const setup = setupOf(batched);
    const plain = { data: Array.from(tensor(5).data), dims: [1, FEATURES] };
    const payloads = [tensor(1), { data: new Float32Array(3), dims: [1, 3], type: 'float32' }, plain, { data: ['x', ...new Array(FEATURES - 1).fill(0)], dims: [1, FEATURES] }, tensor(2)];
    const outcomes = await gatherAll(engine, setup, payloads);
    assert.match((outcomes[1] as Error).message, /msg\.payload\.dims \[1, 3\] do not fit input '[^']+' float32\[[^\]]+\]: dim 1 is 3, expected 16/);
    assert.match((outcomes[3] as Error).message, /msg\.payload\.data\[0\] must be a number, got a string/);
    assert.deepEqual([...outputOf(outcomes[0])], [...outputOf(await runInference(engine, setup, tensor(1)))]);
    assert.deepEqual([...outputOf(outcomes[2])], [...outputOf(await runInference(engine, setup, tensor(5)))]);
    assert.deepEqual([...outputOf(outcomes[4])], [...outputOf(await runInference(engine, setup, tensor(2)))]);
  });

  it('decoding presets get each request its own rows: classification of a one-row and a two-row request', async function () {
    const setup: InferenceSetup = { ...setupOf(batched), output: { kind: 'classification', topK: 2 } };
    const payloads = [tensor(31), tensor(32, 2)];
    const outcomes = await gatherAll(engine, setup, payloads);
    for (let i = 0; i < payloads.length; i++) {
      const alone = await runInference(engine, setup, payloads[i]);
      assert.deepEqual((outcomes[i] as InferenceOutcome).payload, alone.payload, `request ${i}`);
    }
    assert.equal(((outcomes[1] as InferenceOutcome).payload as unknown[]).length, 2, 'two rows, two classifications');
  });

  it('a result that cannot be shaped fails every request of its run', async function () {
    const setup: InferenceSetup = { ...setupOf(batched), output: { kind: 'classification', outputName: 'no-such-output' } };
    const outcomes = await gatherAll(engine, setup, [tensor(1), tensor(2)]);
    assert.equal(outcomes.length, 2);
    for (const o of outcomes) assert.match((o as Error).message, /the model has no output 'no-such-output'/);
  });
});
