import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildMlp, getEngine } from '../../src/engine';
import { NCS2_NODES, buildFlow, collect, graphLease, helper, node, useNodeRedServer, waitFor } from './support';

/** What RED.log.log receives for node.warn (the test helper spies on it). */
interface LogEntry {
  level: number;
  id?: string;
  msg?: unknown;
}
const logSpy = () => (helper as unknown as { log(): { args: Array<[LogEntry]>; WARN: number } }).log();

/** The warnings each node logged so far, by node id. */
function warningsOf(id: string): string[] {
  const spy = logSpy();
  return spy.args.map(([entry]) => entry).filter((e) => e.level === spy.WARN && e.id === id).map((e) => String(e.msg));
}

describe("ncs2 nodes: the engine's warnings reach the nodes that use the graph", function () {
  this.timeout(30000);
  useNodeRedServer();

  let dir: string;
  let model: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-warn-'));
    model = path.join(dir, 'fixed-batch.onnx');
    // A fixed batch dimension of 1: asked for dynamic batching, the engine warns that it runs unbatched.
    fs.writeFileSync(model, buildMlp({ inputSize: 4, hidden: [4], outputSize: 2, batch: 1, seed: 3 }));
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('node.warn of the graph config and of its ncs2-infer, once per deploy, with no listener left over after redeploys or removal', async function () {
    const flow = buildFlow({ graph: { name: 'fixed', model, preset: 'raw', batching: true } });
    await helper.load(NCS2_NODES, flow);
    await graphLease().whenLoaded();
    const unbatched = /^fixed runs unbatched: input '.+' has a fixed batch dimension \(1\)$/;
    await waitFor(() => warningsOf('infer').length === 1, 'the warning on ncs2-infer');
    assert.match(warningsOf('graph')[0] ?? '', unbatched);
    assert.match(warningsOf('infer')[0], unbatched);
    const engine = getEngine();
    assert.equal(engine.listenerCount('warning'), 2, 'the device lease and the graph lease');

    // A full redeploy finds the graph in the engine's cache, which warns again as batching is set anew.
    for (let round = 2; round <= 4; round++) {
      await helper.setFlows(flow, 'full');
      await graphLease().whenLoaded();
      await waitFor(() => warningsOf('infer').length === round, `warning ${round} on ncs2-infer`);
      assert.equal(warningsOf('graph').length, round, 'one warning per deploy: no stale listener repeats it');
      assert.equal(engine.listenerCount('warning'), 2);
    }
    assert.equal(warningsOf('dev').length, 0, 'the warning names the graph, not the device');

    await helper.setFlows([flow[0]], 'full');
    assert.equal(engine.listenerCount('warning'), 0, 'removed nodes leave no listener on the engine');
  });
});

describe('ncs2 nodes: a wrapped error keeps its code for Catch nodes', function () {
  this.timeout(30000);
  useNodeRedServer();

  it("an invalid graph config reaches Catch as msg.error.code CONFIG_INVALID through ncs2-infer's done(err)", async function () {
    await helper.load(NCS2_NODES, buildFlow({ graph: { topK: 'many' }, observers: true }));
    const caught = collect('caught');
    node('infer').receive({ payload: 1 });
    await waitFor(() => caught.length === 1, 'the Catch node');
    const error = caught[0].error as { message: string; code?: string };
    assert.match(error.message, /the model is not loaded, so the message was not processed: graph config graph is invalid: top-k must be an integer/);
    assert.equal(error.code, 'CONFIG_INVALID');
  });
});
