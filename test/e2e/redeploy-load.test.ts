/**
 * Full redeploys while messages flow, on a real Node-RED runtime: every message that reached the
 * ncs2-infer node must end in one output or one error, and no error may carry engine wording (a
 * redeploy once failed a message with "graph ... is not loaded (load it with loadGraph first)").
 * Some redeploys replace the graph config, so the old graph is freed while messages are in
 * flight. Function nodes count what goes into ncs2-infer, what comes out and what a Catch node sees, in
 * global context, which outlives redeploys.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { RedProcess, type DebugStream, type FlowNode } from './harness';
import { ROOT } from './red-boot';

const EXAMPLE = path.join(ROOT, 'examples', 'classify-mnist-digits.json');
const SAMPLE = path.join(ROOT, 'models', 'mnist', 'samples', '0003-0.png');
const REDEPLOYS = 20;
/** Inject period: 50 messages a second. */
const REPEAT_S = '0.02';
/** Messages flow this long between two redeploys. */
const BETWEEN_MS = 800;

interface Counts {
  in: number;
  out: number;
  err: number;
  errors: string[];
}

const countInto = (key: string) => `global.set('${key}', (global.get('${key}') || 0) + 1);`;

/**
 * The example's graph and device configs and its file-in and ncs2-infer nodes, fed by a 50 msg/s
 * inject, with counters around ncs2-infer and a reporter that sends the counts to a debug node.
 */
function loadFlow(repeat: string, inferName: string, graphId?: string): FlowNode[] {
  const example = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
  const tab = example.find((n) => n.type === 'tab')!;
  const graph = example.find((n) => n.type === 'ncs2-graph')!;
  const device = example.find((n) => n.type === 'ncs2-device')!;
  const fileIn = example.find((n) => n.type === 'file in')!;
  const infer = example.find((n) => n.type === 'ncs2-infer')!;
  const z = tab.id;
  // A new graph config id removes the old one: its graph is freed at once, with messages in flight.
  const graphConfig = graphId ? { ...graph, id: graphId } : graph;
  return [
    tab,
    graphConfig,
    device,
    { id: 'load0inject', type: 'inject', z, name: 'load', props: [{ p: 'filename', v: SAMPLE, vt: 'str' }], repeat, once: true, onceDelay: 0.1, topic: '', wires: [[fileIn.id]] },
    { ...fileIn, wires: [['load0countin']] },
    { id: 'load0countin', type: 'function', z, name: 'count in', func: `${countInto('in')}\nreturn msg;`, outputs: 1, wires: [[infer.id]] },
    { ...infer, name: inferName, graph: graphConfig.id, wires: [['load0countout']] },
    { id: 'load0countout', type: 'function', z, name: 'count out', func: `${countInto('out')}\nreturn null;`, outputs: 1, wires: [] },
    { id: 'load0catch', type: 'catch', z, name: '', scope: [infer.id], uncaught: false, wires: [['load0counterr']] },
    {
      id: 'load0counterr',
      type: 'function',
      z,
      name: 'count errors',
      func: `${countInto('err')}\nconst errors = global.get('errors') || [];\nif (errors.length < 20) errors.push(String(msg.error && msg.error.message));\nglobal.set('errors', errors);\nreturn null;`,
      outputs: 1,
      wires: [],
    },
    { id: 'load0report', type: 'inject', z, name: 'report', props: [], repeat: '', once: false, topic: '', wires: [['load0counts']] },
    {
      id: 'load0counts',
      type: 'function',
      z,
      name: 'counts',
      func: "msg.payload = { in: global.get('in') || 0, out: global.get('out') || 0, err: global.get('err') || 0, errors: global.get('errors') || [] };\nreturn msg;",
      outputs: 1,
      wires: [['load0debug']],
    },
    { id: 'load0debug', type: 'debug', z, name: 'counts', active: true, tosidebar: true, console: false, tostatus: false, complete: 'payload', targetType: 'msg', wires: [] },
  ];
}

describe('full redeploys under a 50 msg/s flow on a real Node-RED runtime', function () {
  this.timeout(120000);

  let red: RedProcess;
  let debug: DebugStream;

  before(async function () {
    // Node-RED delivers a message on a wire a turn after it is sent (by default) and drops it when
    // its receiver has stopped in between: on a full deploy that can take any message in transit
    // between any two nodes, here one every few runs between ncs2-infer and the counter after it.
    // That is Node-RED's own wiring, not ncs2-infer; synchronous delivery closes that window, so
    // the counts measure what ncs2-infer answers.
    red = await RedProcess.start({ settings: { debugMaxLength: 20000, runtimeSyncDelivery: true } });
    debug = await red.debugStream();
  });

  after(async function () {
    debug?.close();
    await red?.stop();
  });

  async function counts(): Promise<Counts> {
    const seen = debug.messages.filter((m) => m.id === 'load0debug').length;
    await red.inject('load0report');
    const found = await debug.waitFor((m) => m.id === 'load0debug', seen + 1, 10000, 'counts');
    return JSON.parse(found[found.length - 1].msg) as Counts;
  }

  it(`answers every message ncs2-infer accepted across ${REDEPLOYS} full redeploys, with no engine wording`, async function () {
    await red.deploy(loadFlow(REPEAT_S, 'mnist 0'), debug, 'full');
    await new Promise((resolve) => setTimeout(resolve, BETWEEN_MS));
    for (let i = 1; i <= REDEPLOYS; i++) {
      // A changed property: Node-RED restarts the node, as an edit in the editor followed by Deploy
      // does; every 4th redeploy, and the one after it, also replaces the graph config (a new id), which
      // frees the old graph at once.
      await red.deploy(loadFlow(REPEAT_S, `mnist ${i}`, i % 4 === 0 ? `load0graph${i}` : undefined), debug, 'full');
      await new Promise((resolve) => setTimeout(resolve, BETWEEN_MS));
    }
    // Stop the source (the inject without a repeat) and let what is in flight drain.
    await red.deploy(loadFlow('', 'mnist stopped'), debug, 'full');
    let c = await counts();
    const deadline = Date.now() + 20000;
    while (c.in !== c.out + c.err && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      c = await counts();
    }
    const nodeErrors = debug.messages.filter((m) => m.level === 20).map((m) => m.msg);
    if (process.env.E2E_VERBOSE) console.log(debug.messages.filter((m) => m.level).map((m) => `${m.level} ${m.name ?? m.id}: ${m.msg}`).join("\n"));
    console.log(`      ${REDEPLOYS} full redeploys: ${c.in} messages into ncs2-infer, ${c.out} answered, ${c.err} errors`);
    // At 50 msg/s for ~20 s at least several hundred messages went in; far fewer means the flow did not run.
    assert.ok(c.in >= REDEPLOYS * 20, `only ${c.in} messages reached ncs2-infer`);
    assert.deepEqual(c.errors, [], 'errors reported to the Catch node');
    assert.deepEqual(nodeErrors.filter((m) => /loadGraph|is not loaded/.test(m)), [], 'engine wording in node errors');
    assert.equal(c.err, 0, 'errors');
    assert.equal(c.out, c.in, `answered ${c.out} of ${c.in} accepted messages (${c.in - c.out - c.err} lost)`);
  });
});
