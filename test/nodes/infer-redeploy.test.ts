import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Classification } from '../../src/engine/io/postprocess';
import { NCS2_NODES, SAMPLES, buildFlow, collect, graphLease, helper, node, waitFor, useNodeRedServer } from './support';

const digit = fs.readFileSync(path.join(SAMPLES, '6012-6.png'));
const MESSAGES = 30;

type FlowNode = { id: string; [key: string]: unknown };

/**
 * Deploys the test flow, gives ncs2-infer MESSAGES messages and at once deploys `change(flow)` in
 * full (Node-RED stops every node, downstream ones too, and starts new instances); then expects
 * every message answered by the new flow with its result and nothing reported to Catch.
 */
async function redeployWithMessagesInFlight(change: (flow: FlowNode[]) => FlowNode[]): Promise<void> {
  const flow = buildFlow({ observers: true }) as FlowNode[];
  await helper.load(NCS2_NODES, flow);
  await graphLease().whenLoaded();
  for (let i = 0; i < MESSAGES; i++) node('infer').receive({ payload: digit, seq: i });
  await helper.setFlows(change(flow), 'full');
  const out = collect('out');
  const caught = collect('caught');
  await waitFor(() => out.length + caught.length >= MESSAGES, `${MESSAGES} results after the redeploy (got ${out.length})`);
  assert.deepEqual(caught.map((m) => (m.error as { message: string }).message), []);
  assert.deepEqual(out.map((m) => m.seq as number).sort((a, b) => a - b), [...Array(MESSAGES).keys()]);
  for (const m of out) assert.equal((m.payload as Classification).label, '6');
}

describe('ncs2-infer across a full redeploy with messages in flight', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('sends the results that finish while the old instance closes from the restarted node, and runs what it had not run', async function () {
    await redeployWithMessagesInFlight((flow) => flow.map((n) => (n.id === 'infer' ? { ...n, name: 'renamed' } : n)));
  });

  it('runs on the new graph the messages whose old graph was freed under them (graph config replaced)', async function () {
    // The old graph config is removed, so its graph is freed at once, while the infer node only changes.
    await redeployWithMessagesInFlight((flow) =>
      flow.map((n) => {
        if (n.id === 'graph') return { ...n, id: 'graph2' };
        return n.id === 'infer' ? { ...n, graph: 'graph2' } : n;
      }),
    );
  });
});
