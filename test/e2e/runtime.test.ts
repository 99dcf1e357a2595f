/**
 * End to end on a real Node-RED runtime (RED.init + RED.start in a process of its own, see
 * red-child.ts): the node set loads from package.json's "node-red" section, the example flow is
 * deployed through the admin HTTP API like the editor's Deploy button does, inputs go in through
 * the inject node's admin endpoint, and results are read from the debug sidebar's websocket, as a
 * person with the editor open sees them. Then 100 redeploys, after which memory and the engine's
 * open graphs and devices must be back at their baseline.
 *
 * NODE_RED_PATH selects the Node-RED to run (a package directory or install prefix); by default the
 * node-red devDependency (4.1). .ci/run runs this file again on Node-RED 5 under Node 22.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { RedProcess, type ChildStats, type DebugMessage, type DebugStream, type FlowNode } from './harness';
import { ROOT } from './red-boot';

const EXAMPLE = path.join(ROOT, 'examples', 'classify-mnist-digits.json');
const SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');
const PACKAGE = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; 'node-red': { nodes: Record<string, string> } };
const REDEPLOYS = 100;
// Bounds after 100 redeploys, measured after forced GC. One leaked onnxruntime session, worker
// thread or model copy per redeploy would cost at least ~1 MB each (the model alone is 228 KB,
// an idle worker thread several MB), i.e. >= 100 MB in all; a leaked node, listener set or
// timer per redeploy ~10-100 KB, i.e. >= 1-10 MB of JS heap. The bounds sit below those and above
// the noise of V8 heap layout, code caches and Node-RED's own bookkeeping.
const MAX_HEAP_GROWTH = 8 * 1024 * 1024;
const MAX_RSS_GROWTH = 48 * 1024 * 1024;

interface Outcome {
  filename?: string;
  payload?: { index: number; label: string; score: number; top: Array<{ index: number; label: string; score: number }> };
  inference?: { device: string; queueMs: number; inferMs: number; totalMs: number; batchSize: number };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function loadExample(): FlowNode[] {
  return JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
}

/** The example's pieces found by their wiring, not by id, so the test follows edits to the example. */
function anatomy(flow: FlowNode[]) {
  const byId = new Map(flow.map((n) => [n.id, n]));
  const infer = flow.find((n) => n.type === 'ncs2-infer');
  assert.ok(infer, `${path.basename(EXAMPLE)} has no ncs2-infer node`);
  const debug = (infer.wires ?? []).flat().map((id) => byId.get(id)).find((n) => n?.type === 'debug');
  assert.ok(debug, 'the example wires ncs2-infer to no debug node');
  const upstream = (id: string) => flow.find((n) => (n.wires ?? []).flat().includes(id));
  let inject = upstream(infer.id);
  while (inject && inject.type !== 'inject') inject = upstream(inject.id);
  assert.ok(inject, 'no inject node upstream of ncs2-infer');
  const errorDebugs = flow.filter((n) => n.type === 'debug' && n.id !== debug.id).map((n) => n.id);
  return { infer, debug, inject, errorDebugs };
}

function outcome(m: DebugMessage): Outcome {
  assert.equal(m.format, 'Object', `the debug node should show the complete msg object, got format ${m.format}: ${m.msg}`);
  return JSON.parse(m.msg) as Outcome;
}

function digitOf(file: string): string {
  const match = /-(\d)\.png$/.exec(file);
  assert.ok(match, `sample ${file} does not end in -<digit>.png`);
  return match[1];
}

describe(`end to end on a real Node-RED runtime (${process.env.NODE_RED_PATH ? `NODE_RED_PATH=${process.env.NODE_RED_PATH}` : 'node-red devDependency'})`, function () {
  this.timeout(300000);

  let red: RedProcess;
  let debug: DebugStream;
  const flow = loadExample();
  const parts = anatomy(flow);
  const samples = fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png')).sort();

  /** Injects one sample file through the example's inject node and returns its result. */
  async function classify(file: string): Promise<Outcome> {
    const full = path.join(SAMPLES, file);
    await red.inject(parts.inject.id, [{ p: 'filename', v: full, vt: 'str' }]);
    const [m] = await debug.waitFor((d) => d.id === parts.debug.id && outcome(d).filename === full, 1, 30000, `result for ${file}`);
    return outcome(m);
  }

  function assertNoErrors(): void {
    const errors = debug.messages.filter((m) => m.level === 20 || parts.errorDebugs.includes(m.id));
    assert.deepEqual(errors.map((m) => m.msg), [], 'errors in the debug sidebar');
  }

  before(async function () {
    // A complete msg with its top-3 list is longer than the default 1000-character debug limit allows.
    red = await RedProcess.start({ settings: { debugMaxLength: 20000 } });
    console.log(`      Node-RED ${red.version} on Node ${red.nodeVersion}`);
    debug = await red.debugStream();
  });

  after(async function () {
    debug?.close();
    await red?.stop();
  });

  it('loads the node set with every node type package.json declares, and its examples', async function () {
    const res = await red.request('GET', '/nodes', undefined, { accept: 'application/json' });
    assert.equal(res.status, 200);
    const sets = (res.body as Array<{ module: string; types: string[]; enabled: boolean; err?: string }>).filter((s) => s.module === PACKAGE.name);
    assert.ok(sets.length > 0, `${PACKAGE.name} is not among the loaded modules`);
    for (const s of sets) assert.ok(s.enabled && !s.err, `node set ${JSON.stringify(s)} did not load`);
    assert.deepEqual(sets.flatMap((s) => s.types).sort(), Object.keys(PACKAGE['node-red'].nodes).sort());
    // Import > Examples: the editor reads the 'examples' library, one folder per module.
    const modules = await red.request('GET', '/library/examples/flows/');
    assert.equal(modules.status, 200);
    assert.ok(JSON.stringify(modules.body).includes(PACKAGE.name), `Import > Examples does not list ${PACKAGE.name}: ${JSON.stringify(modules.body)}`);
    const example = await red.request('GET', `/library/examples/flows/${PACKAGE.name}/${path.basename(EXAMPLE, '.json')}`);
    assert.equal(example.status, 200);
    assert.deepEqual(example.body, loadExample(), 'the editor imports the example file as it is');
  });

  it('classifies all 20 bundled MNIST digits correctly through the deployed example flow', async function () {
    assert.equal(samples.length, 20);
    await red.deploy(flow, debug);
    for (const file of samples) {
      const result = await classify(file);
      const p = result.payload!;
      assert.equal(p.label, digitOf(file), `${file} classified as ${p.label} (score ${p.score})`);
      assert.equal(p.index, Number(p.label));
      assert.ok(p.score > 0.9 && p.score <= 1, `${file}: score ${p.score}`);
      assert.equal(p.top.length, 3);
      assert.deepEqual(p.top[0], { index: p.index, label: p.label, score: p.score });
      const t = result.inference!;
      assert.equal(t.batchSize, 1);
      assert.ok(typeof t.device === 'string' && t.device.length > 0);
      for (const k of ['queueMs', 'inferMs', 'totalMs'] as const) assert.ok(t[k] >= 0 && t[k] < 30000, `${k} ${t[k]}`);
      assert.ok(t.totalMs >= t.inferMs);
    }
    // The example's own timer (once on deploy, then every 3 s) picks random samples: right too.
    for (const m of debug.messages.filter((d) => d.id === parts.debug.id)) {
      const o = outcome(m);
      assert.equal(o.payload!.label, digitOf(o.filename!), `${o.filename} classified as ${o.payload!.label}`);
    }
    assertNoErrors();
  });

  it(`redeploys ${REDEPLOYS} times with memory, graphs and devices back at baseline`, async function () {
    // Warm-up redeploys first: the first ones compile code paths and fill caches for good.
    for (let i = 0; i < 5; i++) {
      await red.deploy(flow, debug);
      await classify(samples[i]);
    }
    const baseline: ChildStats = await red.stats();
    assert.equal(baseline.graphCount, 1, 'one graph in use by the example');
    assert.equal(baseline.deviceCount, 1, 'one device in use by the example');
    const t0 = Date.now();
    for (let i = 0; i < REDEPLOYS; i++) {
      // 'full' stops and restarts every node: each config node deregisters and registers again.
      await red.deploy(flow, debug, 'full');
      debug.clear();
      const file = samples[i % samples.length];
      const result = await classify(file);
      assert.equal(result.payload!.label, digitOf(file), `after redeploy ${i + 1}: ${file} classified as ${result.payload!.label}`);
      assertNoErrors();
    }
    const seconds = (Date.now() - t0) / 1000;
    const after: ChildStats = await red.stats();
    const report = `baseline heap ${mb(baseline.heapUsed)} rss ${mb(baseline.rss)}; after ${REDEPLOYS} redeploys (${seconds.toFixed(1)} s) heap ${mb(after.heapUsed)} rss ${mb(after.rss)}`;
    console.log(`      ${report}`);
    assert.equal(after.graphCount, baseline.graphCount, `open graphs: ${report}`);
    assert.equal(after.deviceCount, baseline.deviceCount, `open devices: ${report}`);
    assert.ok(after.heapUsed - baseline.heapUsed < MAX_HEAP_GROWTH, `JS heap grew by more than ${mb(MAX_HEAP_GROWTH)}: ${report}`);
    assert.ok(after.rss - baseline.rss < MAX_RSS_GROWTH, `RSS grew by more than ${mb(MAX_RSS_GROWTH)}: ${report}`);
  });

  it('frees the graph and the device when the flow is deleted', async function () {
    await red.deploy([], debug);
    const s = await red.stats();
    assert.equal(s.graphCount, 0, 'a removed graph config must free its graph at once');
    assert.equal(s.deviceCount, 0, 'a removed device config must close its device at once');
  });

  it('deploys the example again after deletion and classifies', async function () {
    await red.deploy(flow, debug);
    debug.clear();
    const result = await classify(samples[samples.length - 1]);
    assert.equal(result.payload!.label, digitOf(samples[samples.length - 1]));
    assertNoErrors();
  });
});
