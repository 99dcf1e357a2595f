import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Classification, RawOutput } from '../../src/engine/io/postprocess';
import type { NodeMessage } from '../../nodes/lib/red';
import { NCS2_NODES, ROOT, collect, helper, node, waitFor, useNodeRedServer } from './support';
import batchNode = require('../../nodes/ncs2-batch');
import thermalGuardNode = require('../../nodes/ncs2-thermal-guard');

const EXAMPLES = path.join(ROOT, 'examples');

// Core nodes the examples use; debug nodes are swapped for helper nodes to capture their input.
const CORE = ['common/20-inject.js', 'storage/10-file.js', 'sequence/17-split.js', 'function/15-change.js'].map((f) =>
  require(path.join(path.dirname(require.resolve('@node-red/nodes/package.json')), 'core', f)),
);

interface FlowNode {
  id: string;
  type: string;
  name?: string;
  once?: boolean;
  repeat?: string;
}

/** The example as a test flow: debug -> helper, and no timers on inject nodes (the test triggers them). */
function loadExample(file: string): FlowNode[] {
  const flow = JSON.parse(fs.readFileSync(path.join(EXAMPLES, file), 'utf8')) as FlowNode[];
  return flow.map((n) => (n.type === 'debug' ? { ...n, type: 'helper' } : n.type === 'inject' ? { ...n, once: false, repeat: '' } : n));
}

function idOf(flow: FlowNode[], type: string, name?: string): string {
  const found = flow.find((n) => n.type === type && (name === undefined || n.name === name));
  if (!found) throw new Error(`no ${type} ${name ?? ''} in the example`);
  return found.id;
}

describe('examples/ (importable flows)', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('every example is a valid flow and every flow node type of this package appears in one', function () {
    const types = new Set<string>();
    for (const file of fs.readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'))) {
      const flow = JSON.parse(fs.readFileSync(path.join(EXAMPLES, file), 'utf8')) as FlowNode[];
      assert.ok(Array.isArray(flow) && flow.length > 0, file);
      const ids = new Set(flow.map((n) => n.id));
      assert.equal(ids.size, flow.length, `${file}: unique ids`);
      for (const n of flow) types.add(n.type);
    }
    assert.ok(types.has('ncs2-infer'));
    assert.ok(types.has('ncs2-batch'));
    assert.ok(types.has('ncs2-thermal-guard'));
  });

  it('classify-mnist-digits: a random bundled sample is classified as the digit in its file name', async function () {
    const flow = loadExample('classify-mnist-digits.json');
    await helper.load([...CORE, ...NCS2_NODES], flow);
    const results = collect(idOf(flow, 'helper', 'digit'));
    const errors = collect(idOf(flow, 'helper', 'errors'));
    const inject = node(idOf(flow, 'inject'));
    for (let i = 0; i < 5; i++) inject.receive({});
    await waitFor(() => results.length + errors.length === 5, 'five results');
    assert.deepEqual(errors, []);
    for (const msg of results) {
      const truth = path.basename(String(msg.filename)).split('-')[1][0];
      assert.equal((msg.payload as Classification).label, truth, String(msg.filename));
      assert.equal((msg.payload as Classification).top.length, 3);
    }
  });

  it('batch-of-digits-raw-output: four JPEGs run as one batch with a [4, 10] logits output', async function () {
    const flow = loadExample('batch-of-digits-raw-output.json');
    await helper.load([...CORE, ...NCS2_NODES], flow);
    const results: NodeMessage[] = collect(idOf(flow, 'helper', 'raw logits'));
    const errors = collect(idOf(flow, 'helper', 'errors'));
    node(idOf(flow, 'inject')).receive({});
    await waitFor(() => results.length + errors.length === 1, 'one result');
    assert.deepEqual(errors, []);
    const logits = (results[0].payload as Record<string, RawOutput>).logits;
    assert.deepEqual(logits.dims, [4, 10]);
    const data = logits.data as number[];
    const argmax = [0, 1, 2, 3].map((r) => {
      const row = data.slice(r * 10, r * 10 + 10);
      return row.indexOf(Math.max(...row));
    });
    assert.deepEqual(argmax, [0, 1, 2, 3]);
  });

  it('batch-digits-through-ncs2-batch: eight digits in batches of 4 reach the engine as batches of 4, each result paired with its file name', async function () {
    const flow = loadExample('batch-digits-through-ncs2-batch.json');
    await helper.load([...CORE, ...NCS2_NODES, batchNode], flow);
    const results = collect(idOf(flow, 'helper', 'digits'));
    const errors = collect(idOf(flow, 'helper', 'errors'));
    node(idOf(flow, 'inject')).receive({});
    await waitFor(() => results.length + errors.length === 2, 'two batch results');
    assert.deepEqual(errors, []);
    const files: string[] = [];
    for (const msg of results) {
      // The engine ran the four images as one inference, not four runs of one.
      assert.equal((msg.inference as { batchSize: number }).batchSize, 4);
      const rows = msg.payload as Array<{ file: string; label: string; score: number }>;
      assert.equal(rows.length, 4);
      for (const row of rows) {
        assert.equal(row.label, path.basename(row.file).split('-')[1][0], row.file);
        files.push(row.file);
      }
    }
    assert.equal(new Set(files).size, 8, 'every digit once');
  });

  it('thermal-guard: readings on demand for the device the classifier opened', async function () {
    const flow = loadExample('thermal-guard.json');
    await helper.load([...CORE, ...NCS2_NODES, thermalGuardNode], flow);
    const readings = collect(idOf(flow, 'helper', 'readings'));
    const errors = collect(idOf(flow, 'helper', 'errors'));
    node(idOf(flow, 'inject', 'a digit every second')).receive({});
    const cpu = `cpu-${idOf(flow, 'ncs2-device')}`;
    // The device opens when the classifier's graph loads; ask until its reading appears.
    await waitFor(() => {
      if (!readings.some((m) => (m.payload as { deviceId: string }).deviceId === cpu)) node(idOf(flow, 'inject', 'readings now')).receive({});
      return readings.some((m) => (m.payload as { deviceId: string }).deviceId === cpu);
    }, 'a reading of the cpu device');
    const reading = readings.find((m) => (m.payload as { deviceId: string }).deviceId === cpu)!.payload as { temperatureC: number | null; state: string; simulated: boolean };
    assert.ok(reading.temperatureC === null || typeof reading.temperatureC === 'number');
    assert.equal(reading.simulated, false);
    assert.deepEqual(errors, []);
  });
});
