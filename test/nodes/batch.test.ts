import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Classification } from '../../src/engine/io/postprocess';
import type { InferenceReport } from '../../src/engine/io/infer';
import batchNode = require('../../nodes/ncs2-batch');
import { BatchCollector, type BatchCollectorOptions } from '../../nodes/lib/batch-collector';
import { readBatch } from '../../nodes/lib/batch-message';
import type { NodeMessage } from '../../nodes/lib/red';
import { NCS2_NODES, SAMPLES, TAB, buildFlow, collect, graphLease, helper, node, settle, waitFor, useNodeRedServer } from './support';

const sample = (name: string) => fs.readFileSync(path.join(SAMPLES, name));
const NODES = [...NCS2_NODES, batchNode];

interface CaughtMessage extends NodeMessage {
  error: { message: string; source: { id: string; type: string } };
}

/** buildFlow's device -> graph -> infer, with an ncs2-batch in front and the infer node splitting results. */
function batchFlow(batch: Record<string, unknown>, options: { split?: boolean; batching?: boolean } = {}): object[] {
  const flow = buildFlow({ observers: true, graph: { batching: options.batching ?? true, batchMaxSize: 32, batchTargetMs: 20 } }) as Array<Record<string, unknown>>;
  const infer = flow.find((n) => n.id === 'infer')!;
  infer.split = options.split ?? true;
  // One Complete node per flow (the helper registers a core type once per node of it): here it watches the batch node.
  flow.find((n) => n.id === 'complete')!.scope = ['batch'];
  flow.push(
    { id: 'batch', type: 'ncs2-batch', z: TAB, x: 50, y: 100, mode: 'count', count: 3, timeout: 0, maxItems: 64, graph: 'graph', ...batch, wires: [['infer', 'batched']] },
    { id: 'batched', type: 'helper', z: TAB, x: 300, y: 400 },
  );
  return flow;
}

describe('ncs2-batch and ncs2-infer split results (node-red-node-test-helper)', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('groups by count into one batch message: payloads in order, each item message without its payload, each input completed once', async function () {
    await helper.load(NODES, batchFlow({ count: 3 }));
    const batched = collect('batched');
    const completed = collect('completed');
    const images = ['0003-0.png', '1002-1.png', '2128-2.png', '3124-3.png'].map(sample);
    images.forEach((payload, i) => node('batch').receive({ _msgid: `m${i}`, payload, topic: `t${i}` }));
    await waitFor(() => batched.length === 1 && completed.length === 3, 'one batch of 3 and 3 completions');
    const msg = batched[0];
    assert.equal((msg.payload as Buffer[]).length, 3);
    // The helper is the second wire, so it receives Node-RED's clone: a Buffer clone shares the memory, no copy.
    (msg.payload as Buffer[]).forEach((b, i) => assert.ok(b.buffer === images[i].buffer && b.byteOffset === images[i].byteOffset && b.length === images[i].length, `item ${i} shares the arrived Buffer's memory`));
    const items = msg.ncs2Batch as NodeMessage[];
    assert.deepEqual(items.map((m) => [m._msgid, m.topic, 'payload' in m]), [['m0', 't0', false], ['m1', 't1', false], ['m2', 't2', false]]);
    assert.deepEqual(msg.batch, { size: 3, trigger: 'count' });
    assert.deepEqual(completed.map((m) => m._msgid).sort(), ['m0', 'm1', 'm2']);
    // The fourth waits for two more (count mode without a max wait).
    await settle();
    assert.equal(batched.length, 1);
  });

  it('groups by time: what arrived within the max wait leaves as one batch', async function () {
    await helper.load(NODES, batchFlow({ mode: 'time', timeout: 150, maxItems: 64 }));
    const batched = collect('batched');
    for (let i = 0; i < 5; i++) node('batch').receive({ payload: sample('7017-7.png'), i });
    await waitFor(() => batched.length === 1, 'a batch sent by its timer');
    assert.deepEqual(batched[0].batch, { size: 5, trigger: 'time' });
    assert.deepEqual((batched[0].ncs2Batch as NodeMessage[]).map((m) => m.i), [0, 1, 2, 3, 4]);
  });

  it('splits results back: one message per item with its own _msgid, topic, parts and properties, result and timing', async function () {
    await helper.load(NODES, batchFlow({ count: 4 }));
    await graphLease().whenLoaded();
    const out = collect('out');
    const caught = collect('caught');
    const files = ['0007-0.png', '5138-5.png', 'large/6002-6.jpg', '9024-9.png'];
    files.forEach((f, i) =>
      node('batch').receive({ _msgid: `id-${i}`, payload: sample(f), topic: `cam/${i}`, parts: { id: 'p', index: i, count: 4 }, file: f, meta: { n: i } }),
    );
    await waitFor(() => out.length === 4, 'four results');
    assert.equal(caught.length, 0);
    for (const msg of out) {
      const i = Number(String(msg._msgid).slice(3));
      assert.equal(msg.topic, `cam/${i}`);
      assert.deepEqual(msg.parts, { id: 'p', index: i, count: 4 });
      assert.deepEqual(msg.meta, { n: i });
      assert.equal((msg.payload as Classification).label, path.basename(files[i]).split('-')[1][0], files[i]);
      assert.deepEqual(Object.keys(msg).sort(), ['_msgid', 'file', 'inference', 'meta', 'parts', 'payload', 'topic']);
      const inference = msg.inference as InferenceReport;
      assert.ok(inference.batchSize >= 1 && inference.batchSize <= 4, `batchSize ${inference.batchSize}`);
    }
  });

  it('without split results a batch runs as one array: one message, results in item order', async function () {
    await helper.load(NODES, batchFlow({ count: 2 }, { split: false }));
    const out = collect('out');
    node('batch').receive({ payload: sample('2130-2.png') });
    node('batch').receive({ payload: sample('8093-8.png') });
    await waitFor(() => out.length === 1, 'one result');
    assert.deepEqual((out[0].payload as Classification[]).map((r) => r.label), ['2', '8']);
    assert.equal((out[0].inference as InferenceReport).batchSize, 2);
  });

  it('a bad item fails alone: Catch gets that item\'s own message, the others complete', async function () {
    await helper.load(NODES, batchFlow({ count: 3 }));
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    const corrupt = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(60, 7)]);
    node('batch').receive({ _msgid: 'good-1', payload: sample('1003-1.png'), topic: 'a' });
    node('batch').receive({ _msgid: 'bad', payload: corrupt, topic: 'b' });
    node('batch').receive({ _msgid: 'good-2', payload: sample('4157-4.png'), topic: 'c' });
    await waitFor(() => out.length === 2 && caught.length === 1, 'two results and one error');
    assert.deepEqual(out.map((m) => m._msgid).sort(), ['good-1', 'good-2']);
    assert.equal(caught[0]._msgid, 'bad');
    assert.equal(caught[0].topic, 'b');
    assert.ok(corrupt.equals(caught[0].payload as Buffer), 'the item\'s own payload');
    assert.equal(caught[0].error.source.id, 'infer');
    assert.match(caught[0].error.message, /expected an encoded JPEG, PNG or WebP image/);
    await settle();
    assert.equal(caught.length, 1, 'the batch message itself completes without an error');
  });

  it('mixed shapes are not failed: images, multi-row and plain tensors each get their result; only the misfit fails', async function () {
    await helper.load(NODES, batchFlow({ count: 4 }));
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    node('batch').receive({ payload: sample('3126-3.png'), kind: 'image' });
    node('batch').receive({ payload: { data: new Float32Array(2 * 784), dims: [2, 1, 28, 28] }, kind: 'two rows' });
    node('batch').receive({ payload: { data: Array.from({ length: 784 }, () => 0), dims: [1, 1, 28, 28] }, kind: 'plain' });
    node('batch').receive({ payload: { data: new Float32Array(27 * 28), dims: [1, 1, 27, 28] }, kind: 'misfit' });
    await waitFor(() => out.length === 3 && caught.length === 1, 'three results and one error');
    const byKind = new Map(out.map((m) => [m.kind, m.payload]));
    assert.equal((byKind.get('image') as Classification).label, '3');
    assert.equal((byKind.get('two rows') as Classification[]).length, 2);
    assert.equal(typeof (byKind.get('plain') as Classification).label, 'string');
    assert.equal(caught[0].kind, 'misfit');
    assert.match(caught[0].error.message, /dim 2 is 27, expected 28/);
  });

  it('adaptive mode uses the graph\'s current batch cap, and the count while the graph is not loaded', async function () {
    await helper.load(NODES, batchFlow({ mode: 'adaptive', count: 2, timeout: 5000, maxItems: 64 }));
    const batched = collect('batched');
    assert.equal(graphLease().state.state, 'loading');
    node('batch').receive({ payload: sample('0003-0.png') });
    node('batch').receive({ payload: sample('0003-0.png') });
    await waitFor(() => batched.length === 1, 'a batch of the fallback count');
    assert.equal((batched[0].payload as unknown[]).length, 2);
    const loaded = await graphLease().whenLoaded();
    const cap = loaded.engine.getStats().graphs[loaded.setup.handle.id].batching.cap!;
    assert.ok(cap >= 1);
    for (let i = 0; i < cap; i++) node('batch').receive({ payload: sample('0003-0.png') });
    await waitFor(() => batched.length === 2, 'a batch of the cap');
    // The controller may move the cap while the first batch ran; the batch is what it read when the batch started.
    assert.ok((batched[1].payload as unknown[]).length <= cap, `${(batched[1].payload as unknown[]).length} <= ${cap}`);
  });

  it('the graph config passes dynamic batching (max size, target latency) to the engine; a redeploy with it off turns it off', async function () {
    const flow = batchFlow({});
    await helper.load(NODES, flow);
    const on = await graphLease().whenLoaded();
    assert.deepEqual(
      (({ enabled, maxBatchSize, targetLatencyMs }) => ({ enabled, maxBatchSize, targetLatencyMs }))(on.engine.getStats().graphs[on.setup.handle.id].batching),
      { enabled: true, maxBatchSize: 32, targetLatencyMs: 20 },
    );
    // The redeploy finds the graph idle in the engine's cache: batching false must still reach it.
    await helper.setFlows(flow.map((n) => ((n as { id: string }).id === 'graph' ? { ...n, batching: false } : n)));
    const off = await graphLease().whenLoaded();
    assert.equal(off.setup.handle.id, on.setup.handle.id, 'the same engine graph (cache hit)');
    assert.equal(off.engine.getStats().graphs[off.setup.handle.id].batching.enabled, false);
  });

  it('refuses invalid settings with a clear error on every message', async function () {
    await helper.load(NODES, batchFlow({ mode: 'time', timeout: 0 }));
    const caught = collect('caught') as CaughtMessage[];
    node('batch').receive({ payload: 1 });
    await waitFor(() => caught.length === 1, 'an error');
    assert.match(caught[0].error.message, /max wait must be > 0 ms in time mode/);
  });
});

describe('BatchCollector (without Node-RED)', function () {
  function collector(options: Partial<BatchCollectorOptions>) {
    const sent: NodeMessage[] = [];
    const ended: Array<{ id: number; err?: Error }> = [];
    const c = new BatchCollector({ mode: 'count', count: 3, timeoutMs: 0, maxItems: 64, status: () => undefined, ...options });
    const offer = (id: number) =>
      c.onInput(
        { payload: id, id },
        (m) => sent.push(m as NodeMessage),
        (err) => ended.push({ id, err }),
      );
    return { c, sent, ended, offer };
  }

  it('bounds a time batch by max items (sent early, nothing dropped)', function () {
    const { c, sent, ended, offer } = collector({ mode: 'time', timeoutMs: 60_000, maxItems: 4 });
    for (let i = 0; i < 9; i++) offer(i);
    assert.deepEqual(sent.map((m) => m.payload), [[0, 1, 2, 3], [4, 5, 6, 7]]);
    assert.deepEqual(sent.map((m) => m.batch), [{ size: 4, trigger: 'max items' }, { size: 4, trigger: 'max items' }]);
    assert.equal(ended.length, 8);
    assert.equal(c.waiting, 1);
    c.close();
  });

  it('ends every message still held at close with done(err), exactly once, and refuses later ones', function () {
    const { c, sent, ended, offer } = collector({ count: 10, timeoutMs: 60_000 });
    offer(1);
    offer(2);
    c.close();
    offer(3);
    assert.equal(sent.length, 0);
    assert.deepEqual(ended.map((e) => e.id), [1, 2, 3]);
    assert.match(ended[0].err!.message, /ncs2-batch stopped with 2 messages waiting for a batch; this one was not sent/);
    assert.match(ended[2].err!.message, /ncs2-batch is stopping/);
  });

  it('readBatch restores each item\'s message and refuses a malformed batch', function () {
    const items = readBatch({ payload: ['a', 'b'], ncs2Batch: [{ _msgid: '1' }, { _msgid: '2', topic: 't' }] })!;
    assert.deepEqual(items.map((i) => i.msg), [{ _msgid: '1', payload: 'a' }, { _msgid: '2', topic: 't', payload: 'b' }]);
    assert.equal(readBatch({ payload: ['a'] }), undefined);
    assert.throws(() => readBatch({ payload: ['a', 'b'], ncs2Batch: [{}] }), /arrays of equal length; got 1 item messages for 2 payloads/);
  });
});
