import { strict as assert } from 'assert';
import type { NodeMessage } from '../../nodes/lib/red';
import { inferNodeCounts } from '../../nodes/lib/infer-counters';
import { buildStatsMessages } from '../../nodes/lib/stats-messages';
import { parseInferSettings } from '../../nodes/lib/settings';
import { WaitingQueue } from '../../nodes/lib/waiting-queue';
import { getEngine } from '../../src/engine/pipeline/singleton';
import { NCS2_NODES, buildFlow, collect, graphLease, helper, node, settle, statuses, waitFor, useNodeRedServer } from './support';

interface CaughtMessage extends NodeMessage {
  error: { message: string };
}

const tensor = (i: number): NodeMessage => ({ payload: { data: new Float32Array(784), dims: [1, 1, 28, 28] }, i });

/** The infer node of buildFlow with its own backpressure settings. */
function flowWith(infer: Record<string, unknown>): object[] {
  const flow = buildFlow({ observers: true }) as Array<Record<string, unknown>>;
  Object.assign(flow.find((n) => n.id === 'infer')!, infer);
  return flow;
}

function countsOf(id = 'infer') {
  const c = inferNodeCounts().find((n) => n.node === id);
  if (!c) throw new Error(`no counters for ${id}`);
  return c;
}

describe('ncs2-infer backpressure per node (node-red-node-test-helper)', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('drop-oldest with 1 in flight and 1 waiting keeps the newest message: the first and the last of a burst are answered, the rest dropped and counted', async function () {
    await helper.load(NCS2_NODES, flowWith({ policy: 'drop-oldest', maxInFlight: '1', maxWaiting: '1' }));
    await graphLease().whenLoaded();
    const seen = statuses('infer');
    const out = collect('out');
    const caught = collect('caught');
    const completed = collect('completed');
    const burst = 50;
    for (let i = 0; i < burst; i++) node('infer').receive(tensor(i));
    await waitFor(() => completed.length === burst, 'every message completed');
    await settle();
    assert.equal(caught.length, 0);
    // The first went straight to the engine; every later arrival pushed out the one waiting, so the last one won.
    assert.deepEqual(out.map((m) => m.i), [0, burst - 1]);
    const { graphId, ...counts } = countsOf();
    assert.equal(graphId, (graphLease().state as { graph: { setup: { handle: { id: string } } } }).graph.setup.handle.id);
    assert.deepEqual(counts, { node: 'infer', received: burst, answered: 2, failed: 0, dropped: burst - 2, rejected: 0, held: 0 });
    await waitFor(() => seen.some((s) => s.text?.endsWith(`${burst - 2} ncs2-infer.status.dropped`)), `a status with ${burst - 2} dropped`, 3000);
  });

  it('drop-newest keeps the first messages and drops the arriving ones, completing them without an error', async function () {
    await helper.load(NCS2_NODES, flowWith({ policy: 'drop-newest', maxInFlight: '2', maxWaiting: '3' }));
    await graphLease().whenLoaded();
    const out = collect('out');
    const caught = collect('caught');
    const completed = collect('completed');
    const burst = 40;
    for (let i = 0; i < burst; i++) node('infer').receive(tensor(i));
    await waitFor(() => completed.length === burst, 'every message completed');
    await settle();
    assert.equal(caught.length, 0);
    assert.deepEqual(out.map((m) => m.i as number).sort((a, b) => a - b), [0, 1, 2, 3, 4]);
    const c = countsOf();
    assert.deepEqual([c.received, c.answered, c.dropped, c.rejected, c.held], [burst, 5, burst - 5, 0, 0]);
  });

  it('reject ends each message over the limit with an error naming the limit and what to do', async function () {
    await helper.load(NCS2_NODES, flowWith({ policy: 'reject', maxInFlight: '1', maxWaiting: '2' }));
    await graphLease().whenLoaded();
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    const burst = 30;
    for (let i = 0; i < burst; i++) node('infer').receive(tensor(i));
    await waitFor(() => out.length + caught.length === burst, 'every message answered or refused');
    assert.deepEqual(out.map((m) => m.i as number).sort((a, b) => a - b), [0, 1, 2]);
    assert.equal(caught.length, burst - 3);
    for (const m of caught) {
      assert.match(m.error.message, /rejected: this ncs2-infer node already holds its limit of 1 messages in flight and 2 waiting \(policy reject\); slow the source, raise "in flight" or "waiting"/);
    }
    const c = countsOf();
    assert.deepEqual([c.received, c.answered, c.dropped, c.rejected, c.failed], [burst, 3, 0, burst - 3, 0]);
  });

  it('bounds messages held while the model loads by its own waiting limit, not the device queue', async function () {
    await helper.load(NCS2_NODES, flowWith({ policy: 'reject', maxInFlight: '2', maxWaiting: '3' }));
    const out = collect('out');
    const caught = collect('caught') as CaughtMessage[];
    assert.equal(graphLease().state.state, 'loading');
    for (let i = 0; i < 6; i++) node('infer').receive(tensor(i));
    await waitFor(() => out.length === 3 && caught.length === 3, '3 results and 3 refusals');
    assert.deepEqual(out.map((m) => m.i as number).sort((a, b) => a - b), [0, 1, 2]);
    for (const m of caught) assert.match(m.error.message, /2 messages in flight and 3 waiting while the model loads \(policy reject\)/);
  });

  it('stats: ncs2-stats metrics carry each node\'s dropped, rejected and held counts', async function () {
    await helper.load(NCS2_NODES, flowWith({ name: 'camera', policy: 'drop-newest', maxInFlight: '1', maxWaiting: '0' }));
    await graphLease().whenLoaded();
    const completed = collect('completed');
    for (let i = 0; i < 10; i++) node('infer').receive(tensor(i));
    await waitFor(() => completed.length === 10, 'every message completed');
    const stats = getEngine().getStats();
    const { metrics } = buildStatsMessages(stats, {}, inferNodeCounts());
    const get = (topic: string) => metrics.find((m) => m.topic === topic)?.payload;
    assert.equal(get('camera dropped'), 9);
    assert.equal(get('camera rejected'), 0);
    assert.equal(get('camera held'), 0);
    // A device filter leaves node metrics out (a node belongs to a graph, not a device); a graph filter keeps the graph's nodes.
    assert.ok(!buildStatsMessages(stats, { deviceId: 'dev' }, inferNodeCounts()).metrics.some((m) => m.topic.startsWith('camera ')));
    assert.equal(buildStatsMessages(stats, { graphId: countsOf('camera').graphId }, inferNodeCounts()).metrics.find((m) => m.topic === 'camera dropped')?.payload, 9);
    assert.ok(!buildStatsMessages(stats, { graphId: 'another' }, inferNodeCounts()).metrics.some((m) => m.topic.startsWith('camera ')));
  });

  it('refuses invalid settings on every message with the field and what it accepts', async function () {
    await helper.load(NCS2_NODES, flowWith({ policy: 'drop-oldest', maxInFlight: '0', maxWaiting: '1' }));
    const caught = collect('caught') as CaughtMessage[];
    node('infer').receive(tensor(0));
    await waitFor(() => caught.length === 1, 'an error');
    assert.match(caught[0].error.message, /ncs2-infer infer is invalid: in flight must be an integer >= 1 or blank, got "0"/);
  });
});

describe('backpressure pieces (without Node-RED)', function () {
  it('parseInferSettings: blank policy keeps the device config queue; limits default to 64 in flight and 256 waiting', function () {
    assert.deepEqual(parseInferSettings({}), {});
    assert.deepEqual(parseInferSettings({ policy: 'device', maxInFlight: '3' }), {});
    assert.deepEqual(parseInferSettings({ policy: 'reject' }), { backpressure: { policy: 'reject', maxInFlight: 64, maxWaiting: 256 } });
    assert.deepEqual(parseInferSettings({ policy: 'drop-oldest', maxInFlight: 1, maxWaiting: '0' }), { backpressure: { policy: 'drop-oldest', maxInFlight: 1, maxWaiting: 0 } });
    assert.throws(() => parseInferSettings({ policy: 'newest' }), /when full must be one of device, reject, drop-oldest, drop-newest, got "newest"/);
    assert.throws(() => parseInferSettings({ policy: 'reject', maxWaiting: '-1' }), /waiting must be an integer >= 0 or blank, got "-1"/);
  });

  it('WaitingQueue of capacity 0 with drop-oldest drops the newcomer (nothing waits to give way), and take() is FIFO', function () {
    const q0 = new WaitingQueue<number>(0, 'drop-oldest');
    assert.deepEqual(q0.offer(1), { outcome: 'dropped', item: 1 });
    assert.equal(q0.length, 0);
    const q = new WaitingQueue<number>(2, 'drop-oldest');
    q.offer(1);
    q.offer(2);
    assert.deepEqual(q.offer(3), { outcome: 'dropped', item: 1 });
    assert.equal(q.take(), 2);
    assert.equal(q.take(), 3);
    assert.equal(q.take(), undefined);
  });
});
