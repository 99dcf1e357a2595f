import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Classification } from '../../src/engine/io/postprocess';
import { NCS2_NODES, SAMPLES, buildFlow, collect, graphLease, helper, node, waitFor, useNodeRedServer } from './support';

const digit = fs.readFileSync(path.join(SAMPLES, '6012-6.png'));
const MESSAGES = 30;

describe('ncs2-infer across a full redeploy with messages in flight', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('sends the results that finish while the old instance closes from the restarted node, and runs what it had not run', async function () {
    const flow = buildFlow({ observers: true });
    await helper.load(NCS2_NODES, flow);
    await graphLease().whenLoaded();
    for (let i = 0; i < MESSAGES; i++) node('infer').receive({ payload: digit, seq: i });
    // A changed property: Node-RED stops every node (downstream ones too) and starts new instances.
    await helper.setFlows(
      flow.map((n) => ((n as { id: string }).id === 'infer' ? { ...n, name: 'renamed' } : n)),
      'full',
    );
    const out = collect('out');
    const caught = collect('caught');
    await waitFor(() => out.length === MESSAGES, `${MESSAGES} results after the redeploy (got ${out.length})`);
    assert.deepEqual(caught.map((m) => (m.error as { message: string }).message), []);
    assert.deepEqual(out.map((m) => m.seq as number).sort((a, b) => a - b), [...Array(MESSAGES).keys()]);
    for (const m of out) assert.equal((m.payload as Classification).label, '6');
  });
});
