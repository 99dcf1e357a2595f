import { strict as assert } from 'assert';
import { getEngine } from '../../src/engine/pipeline/singleton';
import statsNode = require('../../nodes/ncs2-stats');
import type { NodeMessage } from '../../nodes/lib/red';
import type { DeviceRow } from '../../nodes/lib/stats-messages';
import { NCS2_NODES, ROOT, SAMPLES, TAB, buildFlow, collect, helper, node, statuses, waitFor, useNodeRedServer } from './support';
import { parseExposition, sampleValue } from '../telemetry/exposition';
import * as fs from 'fs';
import * as path from 'path';

// Core nodes the dashboard example uses besides the dashboard's own.
const CORE = ['common/20-inject.js', 'storage/10-file.js', 'function/10-switch.js', 'function/15-change.js'].map((f) => require(path.join(path.dirname(require.resolve('@node-red/nodes/package.json')), 'core', f)));

const ROW_KEYS = ['device', 'fps', 'p50', 'p99', 'tops', 'utilization', 'temperatureC', 'queue', 'drops', 'simulated'];

/** device -> graph -> infer -> out, plus a stats node (filters as given) -> metrics / rows helpers. */
function statsFlow(stats: Record<string, unknown> = {}): object[] {
  return [
    ...buildFlow(),
    { id: 'stats', type: 'ncs2-stats', z: TAB, name: '', interval: 0, graph: '', device: '', ...stats, wires: [['metrics'], ['rows']] },
    { id: 'metrics', type: 'helper', z: TAB },
    { id: 'rows', type: 'helper', z: TAB },
  ];
}

async function classifyOne(): Promise<void> {
  const out = collect('out');
  const image = fs.readFileSync(path.join(SAMPLES, fs.readdirSync(SAMPLES).find((f) => f.endsWith('.png'))!));
  node('infer').receive({ payload: image });
  await waitFor(() => out.length === 1, 'an inference result');
}

describe('ncs2-stats node', function () {
  this.timeout(30000);

  useNodeRedServer();

  it('on input: one {topic, payload: number} message per metric and an array of device rows', async function () {
    await helper.load([...NCS2_NODES, statsNode], statsFlow());
    await classifyOne();
    const metrics = collect('metrics');
    const rows = collect('rows');
    node('stats').receive({ payload: 'now' });
    await waitFor(() => rows.length === 1, 'the device rows');
    assert.ok(metrics.length > 5);
    for (const m of metrics) {
      // What ui-chart / ui-gauge (and the classic chart) take: a string topic and a finite number.
      assert.deepEqual(Object.keys(m).filter((k) => k !== '_msgid').sort(), ['payload', 'topic']);
      assert.equal(typeof m.topic, 'string');
      assert.equal(typeof m.payload, 'number');
      assert.ok(Number.isFinite(m.payload as number), `${String(m.topic)} is finite`);
    }
    const topics = metrics.map((m) => m.topic as string);
    assert.equal(new Set(topics).size, topics.length, 'one message per metric');
    const table = rows[0].payload as DeviceRow[];
    assert.ok(Array.isArray(table) && table.length === 1);
    assert.deepEqual(Object.keys(table[0]).sort(), [...ROW_KEYS].sort());
    const row = table[0];
    assert.ok(row.device.startsWith('cpu-'));
    for (const k of ['fps', 'p50', 'p99', 'tops', 'queue', 'drops'] as const) assert.equal(typeof row[k], 'number', k);
    assert.ok(row.p99 >= row.p50 && row.p50 > 0);
    assert.equal(row.simulated, false);
    assert.ok(topics.includes(`${row.device} p99 ms`) && topics.includes(`${row.device} fps`) && topics.includes('total fps'));
    // Unknown figures are not sent as numbers: no sensor means no temperature series.
    if (row.temperatureC === null) assert.ok(!topics.includes(`${row.device} temperature C`));
    if (row.utilization === null) assert.ok(!topics.includes(`${row.device} utilization`));
  });

  it('filters by device: another device id yields no rows and no device metrics', async function () {
    await helper.load([...NCS2_NODES, statsNode], statsFlow({ device: 'dev' }));
    await classifyOne();
    const metrics = collect('metrics');
    const rows = collect('rows');
    node('stats').receive({ payload: '' });
    await waitFor(() => rows.length === 1, 'rows');
    assert.equal((rows[0].payload as DeviceRow[]).length, 1);
    assert.ok(!metrics.some((m) => m.topic === 'total fps'), 'engine-wide totals only without filters');
    node('stats').receive({ payload: '', device: 'no-such-device' });
    await waitFor(() => rows.length === 2, 'rows');
    assert.deepEqual(rows[1].payload, []);
  });

  it('filters by graph once it is loaded, and emits on its interval', async function () {
    await helper.load([...NCS2_NODES, statsNode], statsFlow({ graph: 'graph', interval: 0.25 }));
    await classifyOne();
    const rows = collect('rows');
    const metrics = collect('metrics');
    await waitFor(() => rows.length >= 2, 'two interval emissions', 5000);
    assert.equal((rows[0].payload as DeviceRow[]).length, 1);
    assert.ok(metrics.some((m) => /p99 ms$/.test(m.topic as string)));
  });

  it('serves Prometheus metrics at GET /ncs2/metrics', async function () {
    await helper.load([...NCS2_NODES, statsNode], statsFlow());
    await helper.request().get('/ncs2/metrics');
    await classifyOne();
    const res = (await helper.request().get('/ncs2/metrics')) as unknown as { status: number; text: string; headers: Record<string, string> };
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /text\/plain/);
    const m = parseExposition(res.text);
    const total = m.get('ncs2_inferences_total')!.samples.reduce((s, x) => s + x.value, 0);
    assert.equal(total, 1);
    assert.equal(m.get('ncs2_task_latency_seconds')!.samples.filter((s) => s.name.endsWith('_count')).reduce((s, x) => s + x.value, 0), 1);
    assert.ok(sampleValue(m, 'ncs2_graph_cache_hit_rate_ratio') !== undefined);
  });

  it('while its graph is not loaded it sends nothing and says it is waiting', async function () {
    const flow = statsFlow({ graph: 'nograph' });
    flow.push({ id: 'nograph', type: 'ncs2-graph', name: '', device: 'dev', model: 'no/such/model.onnx', preset: 'raw' });
    await helper.load([...NCS2_NODES, statsNode], flow);
    const seen = statuses('stats');
    const rows = collect('rows');
    node('stats').receive({ payload: '' } as NodeMessage);
    await waitFor(() => seen.length === 1, 'a status');
    assert.equal(seen[0].fill, 'yellow');
    assert.equal(rows.length, 0);
  });

  it('examples/dashboard.json: charts get {topic, payload: number} by metric, the table gets the device rows', async function () {
    type FlowNode = { id: string; type: string; z?: string; name?: string; label?: string; once?: boolean; repeat?: string; interval?: number; wires?: string[][] };
    const example = JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', 'dashboard.json'), 'utf8')) as FlowNode[];
    const types = new Set(example.map((n) => n.type));
    for (const t of ['ui-base', 'ui-page', 'ui-group', 'ui-chart', 'ui-gauge', 'ui-table', 'ui-template', 'ncs2-stats']) assert.ok(types.has(t), t);
    // Dashboard widgets become helper nodes (the dashboard is not installed here); its config nodes go.
    const flow = example
      .filter((n) => !['ui-base', 'ui-page', 'ui-group', 'ui-theme', 'ui-template'].includes(n.type))
      .map((n) => (n.type.startsWith('ui-') ? { id: n.id, type: 'helper', z: n.z, name: n.label ?? n.type } : n.type === 'inject' ? { ...n, once: false, repeat: '' } : n.type === 'ncs2-stats' ? { ...n, interval: 0 } : n));
    await helper.load([...NCS2_NODES, statsNode, ...CORE], flow);
    const byLabel = (label: string) => example.find((n) => n.label === label)!.id;
    const throughput = collect(byLabel('Throughput (inferences/s)'));
    const latency = collect(byLabel('Latency (ms)'));
    const table = collect(example.find((n) => n.type === 'ui-table')!.id);
    const gauge = collect(example.find((n) => n.type === 'ui-gauge')!.id);
    const completed = () => Object.values(getEngine().getStats().graphs).reduce((n, g) => n + g.completed, 0);
    node(example.find((n) => n.type === 'inject')!.id).receive({});
    await waitFor(() => completed() >= 1, 'one classified digit');
    node(example.find((n) => n.type === 'ncs2-stats')!.id).receive({});
    await waitFor(() => table.length === 1 && throughput.length > 0 && latency.length > 0, 'dashboard inputs');
    for (const m of [...throughput, ...latency, ...gauge]) assert.equal(typeof m.payload, 'number');
    assert.ok(throughput.every((m) => / fps$/.test(m.topic as string)));
    assert.ok(latency.every((m) => / p(50|99) ms$/.test(m.topic as string)));
    assert.ok(gauge.every((m) => / temperature C$/.test(m.topic as string)));
    assert.ok(Array.isArray(table[0].payload) && (table[0].payload as DeviceRow[]).length === 1);
  });
});
