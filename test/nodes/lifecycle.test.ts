import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { getEngine } from '../../src/engine/pipeline/singleton';
import type { Classification } from '../../src/engine/io/postprocess';
import type { NodeMessage } from '../../nodes/lib/red';
import { NCS2_NODES, SAMPLES, TAB, buildFlow, collect, graphLease, helper, node, waitFor, useNodeRedServer } from './support';

const digit = fs.readFileSync(path.join(SAMPLES, '6012-6.png'));

async function classifyOnce(): Promise<NodeMessage> {
  const out = collect('out');
  node('infer').receive({ payload: digit });
  await waitFor(() => out.length === 1, 'a result');
  assert.equal((out[0].payload as Classification).label, '6');
  return out[0];
}

describe('ncs2 nodes: deploy, redeploy and removal', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('redeploying the same flow reloads nothing: one graph, a cache hit, no new miss', async function () {
    const flow = buildFlow();
    await helper.load(NCS2_NODES, flow);
    await classifyOnce();
    const engine = getEngine();
    const before = engine.getStats().graphCache;
    const device = engine.getDevice('cpu-dev');
    assert.equal(engine.graphCount(), 1);

    for (let round = 0; round < 3; round++) {
      await helper.setFlows(flow, 'full');
      await graphLease().whenLoaded();
      await classifyOnce();
    }
    const after = engine.getStats().graphCache;
    assert.equal(engine.graphCount(), 1);
    assert.equal(after.misses, before.misses, 'no graph was compiled again');
    assert.ok(after.hits >= before.hits + 3, `hits ${before.hits} -> ${after.hits}`);
    assert.equal(engine.getDevice('cpu-dev'), device, 'the same device instance (no new workers)');
    assert.equal(engine.listDevices().length, 1);
  });

  it('redeploying only the infer node (modified nodes) keeps the graph and device', async function () {
    const flow = buildFlow();
    await helper.load(NCS2_NODES, flow);
    await classifyOnce();
    const engine = getEngine();
    const misses = engine.getStats().graphCache.misses;
    const changed = flow.map((n) => ((n as { id: string }).id === 'infer' ? { ...n, name: 'renamed' } : n));
    await helper.setFlows(changed, 'nodes');
    await classifyOnce();
    assert.equal(engine.graphCount(), 1);
    assert.equal(engine.getStats().graphCache.misses, misses);
  });

  it('removing the nodes frees the graph and the device at once', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    await classifyOnce();
    const engine = getEngine();
    assert.equal(engine.graphCount(), 1);
    assert.equal(engine.listDevices().length, 1);
    await helper.setFlows([{ id: TAB, type: 'tab', label: 'test' }], 'full');
    // Not the 60 s idle timer: removal (removed=true) frees immediately.
    await waitFor(() => engine.graphCount() === 0 && engine.listDevices().length === 0, 'the graph and device to be freed', 2000);
  });

  it('changing the device config replaces the device and the flow still works', async function () {
    const flow = buildFlow();
    await helper.load(NCS2_NODES, flow);
    await classifyOnce();
    const engine = getEngine();
    const first = engine.getDevice('cpu-dev');
    const changed = flow.map((n) => ((n as { id: string }).id === 'dev' ? { ...n, maxInFlight: '8' } : n));
    await helper.setFlows(changed, 'nodes');
    await graphLease().whenLoaded();
    await classifyOnce();
    const second = engine.getDevice('cpu-dev');
    assert.ok(second && second !== first);
    assert.equal(second.maxInFlight, 8);
    assert.equal(engine.listDevices().length, 1);
  });

  it('messages held while loading end with an error when the node stops before the model is ready', async function () {
    await helper.load(NCS2_NODES, buildFlow());
    assert.equal(graphLease().state.state, 'loading');
    const ended: Array<Error | undefined> = [];
    // Node-RED keeps a node's input handler as _inputCallback; calling it directly exposes done(), which is what this test is about.
    const handler = (node('infer') as unknown as { _inputCallback: (msg: NodeMessage, send: () => void, done: (err?: Error) => void) => void })._inputCallback;
    for (let i = 0; i < 3; i++) handler({ payload: digit }, () => undefined, (err?: Error) => ended.push(err));
    await helper.setFlows([{ id: TAB, type: 'tab', label: 'test' }], 'full');
    assert.equal(ended.length, 3);
    for (const err of ended) assert.match(String(err?.message), /ncs2-infer stopped before the model finished loading; the message was not processed/);
    await waitFor(() => getEngine().graphCount() === 0, 'the graph loaded meanwhile to be freed', 5000);
  });
});
