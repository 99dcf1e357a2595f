import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import batchNode = require('../../nodes/ncs2-batch');
import { inferNodeCounts } from '../../nodes/lib/infer-counters';
import type { NodeMessage } from '../../nodes/lib/red';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { DataType, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { NCS2_NODES, TAB, buildFlow, collect, helper, settle, waitFor, node, useNodeRedServer } from './support';

/**
 * y = Relu(x) with x [N, F]: both the batch and the feature size are symbolic, so requests of
 * different feature sizes are valid for the same graph and must be run in separate groups.
 */
function reluModel(): Uint8Array {
  const graph = {
    name: 'relu',
    node: [makeNode('Relu', ['x'], ['y'])],
    initializer: [],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 'F'])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 'F'])],
  };
  return encodeModel(makeModel(graph));
}

const row = (values: number[], rows = 1) => ({ data: new Float32Array(values), dims: [rows, values.length / rows] });

/** The ReLU model written to a temporary file for the describe block that calls this (mocha hooks); returns its path. */
function reluModelFile(): () => string {
  let dir: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-relu-'));
    fs.writeFileSync(path.join(dir, 'relu.onnx'), reluModel());
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => path.join(dir, 'relu.onnx');
}

/** The node test flow on the ReLU model with dynamic batching. */
const batchingFlow = (model: string) => buildFlow({ observers: true, graph: { model, preset: 'raw', batching: true, batchMaxSize: 16, batchTargetMs: 20 } }) as Array<Record<string, unknown>>;

interface CaughtMessage extends NodeMessage {
  error: { message: string };
}

describe('mixed shapes in one batch (engine and nodes)', function () {
  this.timeout(30000);

  it('engine: tasks of different feature sizes run in separate batched groups, each task gets its own rows', async function () {
    const engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1, threadsPerWorker: 1 })] });
    try {
      // A fixed policy waiting 50 ms: every task below is queued before the first group runs.
      const g = await engine.loadGraph(reluModel(), { batching: { adaptive: false, maxBatchSize: 16, maxDelayMs: 50 } });
      const submit = (values: number[], rows = 1) => engine.submit(g, { x: { type: 'float32', ...row(values, rows) } });
      const [a, b, c, d] = await Promise.all([submit([1, -2, 3]), submit([5, 6, -7, 8, 9]), submit([-1, 2, 3, 4, 5, -6], 2), submit([10, 11, 12, 13, 14])]);
      assert.deepEqual(Array.from(a.outputs.y.data as Float32Array), [1, 0, 3]);
      assert.deepEqual(b.outputs.y.dims, [1, 5]);
      assert.deepEqual(Array.from(b.outputs.y.data as Float32Array), [5, 6, 0, 8, 9]);
      assert.deepEqual(c.outputs.y.dims, [2, 3]);
      assert.deepEqual(Array.from(c.outputs.y.data as Float32Array), [0, 2, 3, 4, 5, 0]);
      assert.deepEqual(Array.from(d.outputs.y.data as Float32Array), [10, 11, 12, 13, 14]);
      // F=3 tasks (1 + 2 rows) ran together, F=5 tasks (1 + 1) together: two runs, not four, none failed.
      assert.deepEqual([a.batchSize, c.batchSize, b.batchSize, d.batchSize], [3, 3, 2, 2]);
      const stats = engine.getStats().graphs[g.id];
      assert.equal(stats.batching.runs, 2);
      assert.equal(stats.failed, 0);
    } finally {
      await engine.close();
    }
  });

  describe('ncs2-infer: single tensors that arrive together on a batching graph', function () {
    useNodeRedServer();
    const model = reluModelFile();

    it('each message gets its own rows in its own message; a bad one fails alone; shapes that differ run apart', async function () {
      const flow = batchingFlow(model());
      await helper.load(NCS2_NODES, flow);
      const out = collect('out');
      const caught = collect('caught') as CaughtMessage[];
      // The model loads first, so the five messages below reach the engine in one turn.
      node('infer').receive({ payload: row([0]), topic: 'warm-up' });
      await waitFor(() => out.length === 1, 'the model loaded');
      out.length = 0;
      node('infer').receive({ payload: row([1, -2, 3]), topic: 'three', _msgid: 'm1' });
      node('infer').receive({ payload: row([5, 6, -7, 8, 9]), topic: 'five', _msgid: 'm2' });
      node('infer').receive({ payload: { data: new Float32Array(5), dims: [1, 3] }, topic: 'bad', _msgid: 'm3' });
      node('infer').receive({ payload: row([-1, 2, 3, 4, 5, -6], 2), topic: 'two rows', _msgid: 'm4' });
      node('infer').receive({ payload: row([-4, 4, -4]), topic: 'three again', _msgid: 'm5' });
      await waitFor(() => out.length === 4 && caught.length === 1, 'four results and one error');
      const byTopic = new Map(out.map((m) => [m.topic, m]));
      const y = (topic: string) => (byTopic.get(topic)!.payload as { y: { data: number[]; dims: number[] } }).y;
      assert.deepEqual(y('three').data, [1, 0, 3]);
      assert.deepEqual(y('three').dims, [1, 3]);
      assert.deepEqual(y('five').data, [5, 6, 0, 8, 9]);
      assert.deepEqual(y('two rows'), { data: [0, 2, 3, 4, 5, 0], dims: [2, 3] });
      assert.deepEqual(y('three again').data, [0, 4, 0]);
      assert.deepEqual(out.map((m) => m._msgid).sort(), ['m1', 'm2', 'm4', 'm5'], 'each result leaves in its own message');
      assert.equal(caught[0].topic, 'bad');
      assert.match(caught[0].error.message, /dims \[1, 3\] need 3 elements, .*data has 5/);
      await settle();
      const c = inferNodeCounts().find((n) => n.node === 'infer')!;
      assert.deepEqual([c.received, c.answered, c.failed, c.dropped, c.rejected, c.held], [6, 5, 1, 0, 0, 0]);
    });
  });

  describe('ncs2-batch -> ncs2-infer (split results, node backpressure on)', function () {
    useNodeRedServer();
    const model = reluModelFile();

    it('items of different shapes each get their result; a bad item fails alone with its own message; the batch message is answered once', async function () {
      const flow = batchingFlow(model());
      Object.assign(flow.find((n) => n.id === 'infer')!, { split: true, policy: 'reject', maxInFlight: '4', maxWaiting: '4' });
      flow.push({ id: 'batch', type: 'ncs2-batch', z: TAB, x: 50, y: 100, mode: 'count', count: 4, timeout: 0, maxItems: 64, wires: [['infer']] });
      await helper.load([...NCS2_NODES, batchNode], flow);
      const out = collect('out');
      const caught = collect('caught') as CaughtMessage[];
      const completed = collect('completed');
      node('batch').receive({ payload: row([1, -2, 3]), topic: 'three' });
      node('batch').receive({ payload: row([5, 6, -7, 8, 9]), topic: 'five' });
      node('batch').receive({ payload: { data: new Float32Array(5), dims: [1, 3] }, topic: 'bad' });
      node('batch').receive({ payload: row([-1, 2, 3, 4, 5, -6], 2), topic: 'two rows' });
      await waitFor(() => out.length === 3 && caught.length === 1 && completed.length === 1, 'three results, one error, the batch message completed');
      const byTopic = new Map(out.map((m) => [m.topic, m.payload as { y: { data: number[]; dims: number[] } }]));
      assert.deepEqual(byTopic.get('three')!.y.data, [1, 0, 3]);
      assert.deepEqual(byTopic.get('five')!.y.data, [5, 6, 0, 8, 9]);
      assert.deepEqual(byTopic.get('two rows')!.y.dims, [2, 3]);
      assert.equal(caught[0].topic, 'bad');
      assert.match(caught[0].error.message, /dims \[1, 3\] need 3 elements, .*data has 5/);
      await settle();
      const c = inferNodeCounts().find((n) => n.node === 'infer')!;
      // Counts are per input message: the one batch message, answered (its bad item went to Catch on its own).
      assert.deepEqual([c.received, c.answered, c.failed, c.dropped, c.rejected, c.held], [1, 1, 0, 0, 0, 0]);
    });
  });
});
