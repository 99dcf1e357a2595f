import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import type { Classification, RawOutput } from '../../src/engine/io/postprocess';
import type { InferenceReport } from '../../src/engine/io/infer';
import type { NodeMessage } from '../../nodes/lib/red';
import { NCS2_NODES, SAMPLES, buildFlow, collect, graphLease, helper, node, settle, statuses, waitFor, useNodeRedServer } from './support';

const sample = (name: string) => fs.readFileSync(path.join(SAMPLES, name));

interface CaughtMessage extends NodeMessage {
  error: { message: string; source: { id: string; type: string } };
}

describe('ncs2-infer (node-red-node-test-helper)', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('loads all three node types and shows ready with the device once the model is loaded', async function () {
    await helper.load(NCS2_NODES, buildFlow({ device: { name: 'stick' } }));
    const seen = statuses('infer');
    assert.equal(node('dev').type, 'ncs2-device');
    assert.equal(node('graph').type, 'ncs2-graph');
    assert.equal(node('infer').type, 'ncs2-infer');
    await graphLease().whenLoaded();
    await waitFor(() => seen.some((s) => s.fill === 'green'), 'a ready status');
    assert.deepEqual(seen.find((s) => s.fill === 'green'), { fill: 'green', shape: 'ring', text: 'ncs2-infer.status.ready · stick' });
  });

  it('classifies the sample digits with the right labels and reports timing in msg.inference', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    const out = collect('out');
    const files = fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png'));
    for (const f of files) node('infer').receive({ payload: sample(f), file: f });
    await waitFor(() => out.length === files.length, `${files.length} results`);
    for (const msg of out) {
      const result = msg.payload as Classification;
      assert.equal(result.label, String(msg.file).split('-')[1][0], String(msg.file));
      assert.deepEqual(Object.keys(result).sort(), ['index', 'label', 'score', 'top']);
      assert.equal(result.top.length, 3);
      assert.ok(result.score > 0.9);
      const inference = msg.inference as InferenceReport;
      assert.deepEqual(Object.keys(inference).sort(), ['batchSize', 'device', 'inferMs', 'queueMs', 'totalMs']);
      assert.equal(inference.device, 'cpu-dev');
      assert.equal(inference.batchSize, 1);
      assert.ok(inference.inferMs > 0 && inference.totalMs >= inference.inferMs && inference.queueMs >= 0);
    }
  });

  it('leaves every other message property untouched and the input Buffer unmodified', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    const out = collect('out');
    const image = sample('large/4152-4.jpg');
    const copy = Buffer.from(image);
    const nested = { camera: 'porch', at: [1, 2, { deep: true }] };
    node('infer').receive({ payload: image, topic: 'cam/1', meta: nested, count: 3 });
    await waitFor(() => out.length === 1, 'a result');
    const msg = out[0];
    assert.equal(msg.topic, 'cam/1');
    assert.equal(msg.count, 3);
    assert.deepEqual(msg.meta, { camera: 'porch', at: [1, 2, { deep: true }] });
    assert.deepEqual(Object.keys(msg).sort(), ['_msgid', 'count', 'inference', 'meta', 'payload', 'topic']);
    assert.equal((msg.payload as Classification).label, '4');
    assert.ok(image.equals(copy));
  });

  it('takes raw tensors as plain arrays and typed arrays', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    const out = collect('out');
    const data = await sharp(sample('8092-8.png')).grayscale().raw().toBuffer();
    const pixels = Array.from(data, (v) => v / 255);
    node('infer').receive({ payload: { data: pixels, dims: [1, 1, 28, 28] } });
    node('infer').receive({ payload: { data: Float32Array.from(pixels), dims: [1, 1, 28, 28], type: 'float32' } });
    await waitFor(() => out.length === 2, 'two results');
    assert.deepEqual(out.map((m) => (m.payload as Classification).label), ['8', '8']);
  });

  it('runs an array of images and tensors as one batch and returns one result per item', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    const out = collect('out');
    const zeros = { data: new Float32Array(784), dims: [1, 1, 28, 28] };
    node('infer').receive({ payload: [sample('2128-2.png'), sample('large/6002-6.jpg'), zeros, sample('9025-9.png')] });
    await waitFor(() => out.length === 1, 'a result');
    const results = out[0].payload as Classification[];
    assert.ok(Array.isArray(results));
    assert.equal(results.length, 4);
    assert.deepEqual([results[0].label, results[1].label, results[3].label], ['2', '6', '9']);
    assert.equal((out[0].inference as InferenceReport).batchSize, 4);
  });

  it('raw preset gives one entry per model output with data and dims', async function () {
    await helper.load(NCS2_NODES, buildFlow({ graph: { preset: 'raw' } }));
    const out = collect('out');
    node('infer').receive({ payload: [sample('3126-3.png'), sample('5139-5.png')] });
    await waitFor(() => out.length === 1, 'a result');
    const payload = out[0].payload as Record<string, RawOutput>;
    assert.deepEqual(Object.keys(payload), ['logits']);
    assert.deepEqual(payload.logits.dims, [2, 10]);
    const rows = [0, 1].map((r) => (payload.logits.data as number[]).slice(r * 10, r * 10 + 10));
    assert.deepEqual(rows.map((row) => row.indexOf(Math.max(...row))), [3, 5]);
  });

  it('sends bad input to a Catch node with what was expected and what arrived', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true }));
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    const corruptJpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(60, 7)]);
    node('infer').receive({ payload: 'a string, not an image', n: 1 });
    node('infer').receive({ payload: { data: new Float32Array(27 * 28), dims: [1, 1, 27, 28] }, n: 2 });
    node('infer').receive({ payload: corruptJpeg, n: 3 });
    await waitFor(() => caught.length === 3, 'three caught errors');
    const byN = new Map(caught.map((m) => [m.n, m.error]));
    assert.match(byN.get(1)!.message, /expected msg.payload to be an encoded image Buffer \(JPEG, PNG, WebP\), raw pixels \{data, width, height, channels\}, a tensor \{data, dims, type\} or an array of these; got a string of 22 characters/);
    assert.match(byN.get(2)!.message, /dims \[1, 1, 27, 28\] do not fit input 'image' float32\[N, 1, 28, 28\]: dim 2 is 27, expected 28/);
    assert.match(byN.get(3)!.message, /expected an encoded JPEG, PNG or WebP image; got 64 bytes \(starting ff d8 ff e0/);
    for (const error of byN.values()) assert.equal(error.source.id, 'infer');
    await settle();
    assert.equal(out.length, 0);
  });

  it('holds messages that arrive while the model loads and runs them once it is ready', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true }));
    const out = collect('out');
    const caught = collect('caught');
    // Precondition: a fresh engine has not loaded the model yet (loading takes hundreds of ms).
    assert.equal(graphLease().state.state, 'loading');
    const names = ['0003-0.png', '1003-1.png', '2130-2.png', '3124-3.png', '4157-4.png'];
    for (const n of names) node('infer').receive({ payload: sample(n) });
    await waitFor(() => out.length === names.length, 'every held message');
    // Images decode in parallel, so results may leave in another order than they came.
    assert.deepEqual(out.map((m) => (m.payload as Classification).label).sort(), ['0', '1', '2', '3', '4']);
    // Time spent waiting for the model counts as queueing.
    for (const m of out) assert.ok((m.inference as InferenceReport).queueMs > 1, `queueMs ${(m.inference as InferenceReport).queueMs}`);
    assert.equal(caught.length, 0);
  });

  it('bounds the messages held while loading by the queue capacity (policy reject -> Catch)', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true, device: { queueCapacity: 2, queuePolicy: 'reject' } }));
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    assert.equal(graphLease().state.state, 'loading');
    for (let i = 0; i < 5; i++) node('infer').receive({ payload: sample('7017-7.png'), i });
    await waitFor(() => out.length === 2 && caught.length === 3, '2 results and 3 refusals');
    // The first two waited; the rest were refused.
    assert.deepEqual(out.map((m) => m.i).sort(), [0, 1]);
    for (const m of caught) assert.match(m.error.message, /rejected: 2 messages are already waiting for the model to load/);
  });

  it('counts messages dropped by a drop policy in the status and completes them without an error', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true, device: { queueCapacity: 1, queuePolicy: 'drop-newest' } }));
    await graphLease().whenLoaded();
    const seen = statuses('infer');
    const out = collect('out');
    const caught = collect('caught');
    const completed = collect('completed');
    const burst = 100;
    for (let i = 0; i < burst; i++) node('infer').receive({ payload: { data: new Float32Array(784), dims: [1, 1, 28, 28] } });
    await waitFor(() => completed.length === burst, 'every message completed');
    await settle();
    assert.equal(caught.length, 0);
    assert.ok(out.length > 0 && out.length < burst, `${out.length} of ${burst} results: a burst over a queue of 1 must drop some`);
    const dropped = burst - out.length;
    await waitFor(() => seen.some((s) => s.text?.endsWith(`${dropped} ncs2-infer.status.dropped`)), `a status with ${dropped} dropped`, 3000);
  });

  it('refuses a burst over a full queue with policy reject, each refusal reaching Catch', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true, device: { queueCapacity: 1, queuePolicy: 'reject' } }));
    await graphLease().whenLoaded();
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    const burst = 100;
    for (let i = 0; i < burst; i++) node('infer').receive({ payload: { data: new Float32Array(784), dims: [1, 1, 28, 28] } });
    await waitFor(() => out.length + caught.length === burst, 'every message answered');
    assert.ok(caught.length > 0, 'some refusals');
    for (const m of caught) assert.match(m.error.message, /rejected: queue of .* is full \(1 waiting; policy reject\); raise queue capacity/);
  });

  it('reports an invalid graph config and a missing labels file on every message', async function () {
    await helper.load(NCS2_NODES, [
      ...buildFlow({ observers: true, graph: { width: 'wide' } }),
      { id: 'graph2', type: 'ncs2-graph', device: 'dev', model: '', preset: 'classification', labels: '/nonexistent/labels.txt' },
      { id: 'infer2', type: 'ncs2-infer', z: 'tab1', x: 100, y: 400, graph: 'graph2', wires: [['out']] },
    ]);
    const caught = collect('caught') as CaughtMessage[];
    const seen2 = statuses('infer2');
    await assert.rejects(graphLease('graph2').whenLoaded(), /cannot read labels file \/nonexistent\/labels.txt: no such file/);
    node('infer').receive({ payload: sample('0003-0.png') });
    node('infer2').receive({ payload: sample('0003-0.png') });
    await waitFor(() => caught.length === 2, 'two errors');
    const bySource = new Map(caught.map((m) => [m.error.source.id, m.error.message]));
    assert.match(bySource.get('infer')!, /graph config graph is invalid: width must be an integer >= 1 or blank, got "wide"/);
    assert.match(bySource.get('infer2')!, /the model is not loaded, so the message was not processed: cannot read labels file/);
    await waitFor(() => seen2.some((s) => s.fill === 'red'), 'a red status');
  });

  it('tells the user to choose a graph when none is selected', async function () {
    await helper.load(NCS2_NODES, buildFlow({ observers: true, noGraph: true }));
    const caught = collect('caught') as CaughtMessage[];
    node('infer').receive({ payload: sample('0003-0.png') });
    await waitFor(() => caught.length === 1, 'an error');
    assert.match(caught[0].error.message, /no ncs2-graph config node is selected; open the node and choose a graph/);
  });
});
