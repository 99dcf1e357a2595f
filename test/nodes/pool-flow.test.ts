import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getEngine } from '../../src/engine/pipeline/singleton';
import type { SimNcs2Device } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import type { InferenceReport } from '../../src/engine';
import type { DeviceConfigNode } from '../../nodes/lib/config-nodes';
import type { NodeMessage } from '../../nodes/lib/red';
import type { DeviceRow } from '../../nodes/lib/stats-messages';
import statsNode = require('../../nodes/ncs2-stats');
import { NCS2_NODES, ROOT, SAMPLES, TAB, buildFlow, collect, graphLease, helper, node, settle, statuses, waitFor, useNodeRedServer } from './support';

const digits = fs
  .readdirSync(SAMPLES)
  .filter((f) => f.endsWith('.png'))
  .map((f) => fs.readFileSync(path.join(SAMPLES, f)));

const STICKS = [{ kind: 'sim-ncs2' }, { kind: 'sim-ncs2' }, { kind: 'sim-ncs2' }];
const IDS = ['sim-ncs2-dev', 'sim-ncs2-dev-m2', 'sim-ncs2-dev-m3'];

function poolFlow(members: object[] = STICKS): object[] {
  const flow = buildFlow({ device: { members }, observers: true });
  flow.push(
    { id: 'stats', type: 'ncs2-stats', z: TAB, x: 100, y: 400, name: '', interval: '0', device: 'dev', graph: 'graph', wires: [['metrics'], ['rows']] },
    { id: 'metrics', type: 'helper', z: TAB, x: 300, y: 400 },
    { id: 'rows', type: 'helper', z: TAB, x: 300, y: 450 },
  );
  return flow;
}

function send(n: number): void {
  for (let i = 0; i < n; i++) node('infer').receive({ payload: digits[i % digits.length], seq: i } as NodeMessage);
}

describe('ncs2-device pools in Node-RED', function () {
  this.timeout(60000);
  useNodeRedServer();

  it('a 3-stick pool loads the graph on every member and spreads a burst over all of them; msg.inference.device names the member', async function () {
    await helper.load([...NCS2_NODES, statsNode], poolFlow());
    const loaded = await graphLease().whenLoaded();
    assert.deepEqual(loaded.deviceIds, IDS);
    assert.deepEqual(loaded.notRunning, {});
    const out = collect('out');
    const caught = collect('caught');
    send(60);
    await waitFor(() => out.length + caught.length === 60, '60 outcomes');
    assert.equal(caught.length, 0);
    const ran = new Map<string, number>();
    for (const m of out) {
      const device = (m.inference as InferenceReport).device;
      ran.set(device, (ran.get(device) ?? 0) + 1);
    }
    assert.deepEqual([...ran.keys()].sort(), IDS, `ran on ${JSON.stringify([...ran])}`);

    const rows = collect('rows');
    node('stats').receive({ payload: '' });
    await waitFor(() => rows.length === 1, 'the pool rows');
    const table = rows[0].payload as DeviceRow[];
    assert.deepEqual(
      table.map((r) => [r.device, r.kind, r.member, r.state, r.simulated]),
      IDS.map((id, i) => [id, 'sim-ncs2', i + 1, 'serving', true]),
    );
    const shares = table.map((r) => r.share!);
    assert.ok(shares.every((s) => s > 0));
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 0.001, `shares ${shares.join(', ')} add up to 1`);
  });

  it('a stick pulled mid-stream loses no message: each ends in exactly one output or one error, and the others carry on', async function () {
    await helper.load([...NCS2_NODES, statsNode], poolFlow());
    await graphLease().whenLoaded();
    const out = collect('out');
    const caught = collect('caught');
    const total = 150;
    send(total);
    await waitFor(() => out.length >= 20, 'the first results');
    // Pulled while it runs something (checked in the same tick), so there is work to move.
    await waitFor(() => getEngine().getStats().devices[IDS[1]].inFlight > 0, 'the stick to hold a run');
    (getEngine().getDevice(IDS[1]) as SimNcs2Device).simulateUnplug();
    await waitFor(() => out.length + caught.length >= total, `${total} outcomes`);
    await settle(200);
    const seqs = [...out, ...caught].map((m) => m.seq as number).sort((a, b) => a - b);
    assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i), 'every message once, none twice');
    // The engine retried what the pulled stick held on the others: nothing failed.
    assert.equal(caught.length, 0, caught.map((m) => (m.error as { message: string }).message).join('; '));
    const late = out.slice(-20).map((m) => (m.inference as InferenceReport).device);
    assert.ok(!late.includes(IDS[1]), 'the pulled stick ran nothing at the end');
    assert.equal(getEngine().getDevice(IDS[1]), undefined);
    const graph = getEngine().getStats().graphs[graphLease().graphId!];
    assert.ok(graph.retried > 0, 'what the pulled stick held was retried on the others');
    assert.equal(graph.failed, 0);

    const members = (node('dev') as unknown as DeviceConfigNode).lease!.members();
    assert.deepEqual(
      members.map((m) => [m.position, m.state]),
      [
        [1, 'serving'],
        [2, 'removed'],
        [3, 'serving'],
      ],
    );
    const rows = collect('rows');
    node('stats').receive({ payload: '' });
    await waitFor(() => rows.length === 1, 'the pool rows');
    assert.deepEqual(
      (rows[0].payload as DeviceRow[]).map((r) => r.state),
      ['serving', 'removed', 'serving'],
    );
  });

  it('an INT8 graph skips the NCS2 members with the reason in the status and the stats; the CPU member serves', async function () {
    const saved = process.env.NCS2_CACHE_DIR;
    const cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-pool-int8-'));
    process.env.NCS2_CACHE_DIR = cacheRoot;
    try {
      const flow = poolFlow([{ kind: 'cpu', workers: '1' }, { kind: 'sim-ncs2' }]);
      Object.assign(flow.find((n) => (n as { id: string }).id === 'graph')!, { optimize: 'int8', calibration: SAMPLES });
      await helper.load([...NCS2_NODES, statsNode], flow);
      const seen = statuses('infer');
      const loaded = await graphLease().whenLoaded();
      assert.deepEqual(loaded.deviceIds, ['cpu-dev']);
      assert.match(loaded.notRunning['sim-ncs2-dev-m2'], /INT8 graph cannot run on an NCS2 \(the Myriad X computes in FP16 only\)/);
      const out = collect('out');
      send(6);
      await waitFor(() => out.length === 6, 'results');
      // The status line (redrawn when its rate changes) names how many members serve.
      await waitFor(() => seen.some((st) => /cpu \+ sim-ncs2 \(1 of 2 serve\)/.test(String(st.text))), 'the status naming the members that serve', 5000);
      assert.ok(out.every((m) => (m.inference as InferenceReport).device === 'cpu-dev'));
      const rows = collect('rows');
      node('stats').receive({ payload: '' });
      await waitFor(() => rows.length === 1, 'the pool rows');
      const stick = (rows[0].payload as DeviceRow[]).find((r) => r.device === 'sim-ncs2-dev-m2')!;
      assert.equal(stick.state, 'not running');
      assert.match(stick.reason!, /FP16 only/);
    } finally {
      if (saved === undefined) delete process.env.NCS2_CACHE_DIR;
      else process.env.NCS2_CACHE_DIR = saved;
      fs.rmSync(cacheRoot, { recursive: true, force: true });
    }
  });

  it('examples/pool-digits.json: a stream of digits over the CPU and two simulated sticks, classified right, with a row per member', async function () {
    const core = ['common/20-inject.js', 'storage/10-file.js', 'sequence/17-split.js', 'function/15-change.js'].map((f) =>
      require(path.join(path.dirname(require.resolve('@node-red/nodes/package.json')), 'core', f)),
    );
    type FlowNode = { id: string; type: string; name?: string; once?: boolean; repeat?: string };
    const flow = (JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', 'pool-digits.json'), 'utf8')) as FlowNode[]).map((n) =>
      n.type === 'debug' ? { ...n, type: 'helper' } : n.type === 'inject' || n.type === 'ncs2-stats' ? { ...n, once: false, repeat: '', interval: n.type === 'ncs2-stats' ? 0 : undefined } : n,
    );
    const id = (type: string, name?: string) => flow.find((n) => n.type === type && (name === undefined || n.name === name))!.id;
    await helper.load([...NCS2_NODES, statsNode, ...core], flow);
    const results = collect(id('helper', 'digit and member'));
    const errors = collect(id('helper', 'errors'));
    const rows = collect(id('helper', 'members'));
    const deviceIds = (node(id('ncs2-device')) as unknown as DeviceConfigNode).lease!.devices.map((d) => d.spec.id);
    assert.equal(deviceIds.length, 3);
    const ran = new Set<string>();
    // Frames come ten at a time; keep them coming until every member has run some (bounded).
    for (let round = 0; round < 30 && ran.size < 3; round++) {
      const before = results.length;
      node(id('inject')).receive({});
      await waitFor(() => results.length + errors.length >= before + 10, 'ten frames classified');
      for (const m of results) ran.add((m.inference as InferenceReport).device);
    }
    assert.equal(errors.length, 0);
    assert.deepEqual([...ran].sort(), [...deviceIds].sort());
    for (const m of results) assert.equal((m.payload as { label: string }).label, path.basename(String(m.filename)).split('-')[1][0], String(m.filename));
    node(id('ncs2-stats')).receive({ payload: '' });
    await waitFor(() => rows.length === 1, 'the member rows');
    assert.deepEqual(
      (rows[0].payload as DeviceRow[]).map((r) => [r.kind, r.member, r.state, r.simulated]),
      [
        ['cpu', 1, 'serving', false],
        ['sim-ncs2', 2, 'serving', true],
        ['sim-ncs2', 2, 'serving', true],
      ],
    );
  });

  it('the latency hint keeps one request in flight per device and no batching; throughput turns on adaptive batching', async function () {
    await helper.load(NCS2_NODES, buildFlow({ device: { members: [{ kind: 'cpu' }, { kind: 'sim-ncs2' }], performance: 'latency' } }));
    let loaded = await graphLease().whenLoaded();
    assert.deepEqual(
      getEngine()
        .listDevices()
        .map((d) => [d.id, d.maxInFlight]),
      [
        ['cpu-dev', 1],
        ['sim-ncs2-dev-m2', 1],
      ],
    );
    assert.equal(getEngine().getDevice('cpu-dev')!.parallelism, 1, 'one CPU worker');
    assert.equal(loaded.engine.batchCap(loaded.setup.handle), undefined, 'no batching');
    await helper.unload();
    await helper.load(NCS2_NODES, buildFlow({ device: { members: [{ kind: 'cpu' }, { kind: 'sim-ncs2' }], performance: 'throughput' } }));
    loaded = await graphLease().whenLoaded();
    assert.equal(typeof loaded.engine.batchCap(loaded.setup.handle), 'number', 'adaptive batching is on');
    const out = collect('out');
    send(8);
    await waitFor(() => out.length === 8, 'results');
  });

  it('a usb member (no runtime drives a real stick) is listed with why it does not serve; GET ncs2/devices gives each member state', async function () {
    await helper.load(NCS2_NODES, buildFlow({ device: { members: [{ kind: 'cpu', workers: '1' }, { kind: 'usb', path: '' }] } }));
    const loaded = await graphLease().whenLoaded();
    assert.deepEqual(loaded.deviceIds, ['cpu-dev']);
    const res = await helper.request().get('/ncs2/devices');
    const body = res.body as { kinds: Array<{ kind: string; available: boolean }>; pools: Array<{ config: string; members: Array<{ position: number; kind: string; state: string; reason?: string }> }> };
    assert.deepEqual(
      body.kinds.map((k) => [k.kind, k.available]),
      [
        ['cpu', true],
        ['sim-ncs2', true],
        ['usb', false],
      ],
    );
    const pool = body.pools.find((p) => p.config === 'dev')!;
    assert.deepEqual(
      pool.members.map((m) => [m.position, m.kind, m.state]),
      [
        [1, 'cpu', 'serving'],
        [2, 'usb', 'unavailable'],
      ],
    );
    // This host has no NCS2 on USB (a VM); a host with one would name its path and the missing runtime instead.
    assert.match(pool.members[1].reason!, /no NCS2 stick found on USB|no NCS2 runtime installed/);
    const out = collect('out');
    send(3);
    await waitFor(() => out.length === 3, 'results from the cpu member');
  });

  it('a pool whose only member cannot serve fails the graph with the member and why, not an engine message', async function () {
    await helper.load(NCS2_NODES, buildFlow({ device: { members: [{ kind: 'usb', path: '9-9' }] } }));
    await assert.rejects(graphLease().whenLoaded(), /device config usb has no member that can run a graph now \(member 1 \(usb\): no NCS2 stick found at USB 9-9.*\); add a cpu or sim-ncs2 member/);
  });
});
