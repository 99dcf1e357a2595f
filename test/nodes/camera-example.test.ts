import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import cameraNode = require('../../nodes/ncs2-camera');
import trackNode = require('../../nodes/ncs2-track');
import { NCS2_NODES, ROOT, collect, helper, node, useNodeRedServer, waitFor } from './support';
import type { NodeMessage } from '../../nodes/lib/red';

const CORE = ['common/20-inject.js', 'function/90-exec.js'].map((f) => require(path.join(path.dirname(require.resolve('@node-red/nodes/package.json')), 'core', f)));
const VIDEO = '/tmp/ncs2-moving-digits.avi';

interface FlowNode {
  id: string;
  type: string;
  name?: string;
  once?: boolean;
  wires?: string[][];
}

/**
 * The example as a test flow: debug and MQTT out nodes become helper nodes (to capture what they
 * get; no broker here), the broker and the Catch go (errors are read from the nodes' error calls),
 * and the inject node waits for the test.
 */
function loadExample(): FlowNode[] {
  const flow = JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', 'camera-motion-track.json'), 'utf8')) as FlowNode[];
  return flow
    .filter((n) => n.type !== 'mqtt-broker' && n.type !== 'catch')
    .map((n) => (n.type === 'debug' || n.type === 'mqtt out' ? { ...n, type: 'helper' } : n.type === 'inject' ? { ...n, once: false } : n));
}

describe('examples/camera-motion-track.json (ffmpeg, motion gate, digit detector, tracker)', function () {
  this.timeout(120_000);
  useNodeRedServer();

  it('makes the video, gates still frames, detects the digits and sends zone events with crops to MQTT', async function () {
    fs.rmSync(VIDEO, { force: true });
    const flow = loadExample();
    const id = (type: string, name?: string) => flow.find((n) => n.type === type && (name === undefined || n.name === name))!.id;
    await helper.load([...CORE, ...NCS2_NODES, cameraNode, trackNode], flow);
    const errors: string[] = [];
    for (const n of flow.filter((f) => f.type.startsWith('ncs2-') && 'wires' in f)) node(n.id).on('call:error', (c: { args: [unknown] }) => errors.push(String(c.args[0])));
    const published: NodeMessage[] = collect(id('helper', 'publish events'));
    node(id('inject')).receive({});
    await waitFor(() => fs.existsSync(VIDEO), 'the exec node to write the video', 30_000);
    // the scene slides in for 6 s, then stands still; the clip is 12 s
    await waitFor(() => published.some((m) => (m.payload as { type: string }).type === 'dwell'), 'a dwell event (3 s in the zone)', 60_000).catch((err: Error) => {
      throw new Error(`${err.message}; events: ${published.map((m) => m.topic).join(', ') || 'none'}; errors: ${errors.join('; ') || 'none'}`);
    });
    assert.deepEqual(errors, []);
    const types = published.map((m) => (m.payload as { type: string }).type);
    console.log(`      example: ${published.length} events before the first dwell: ${['entered', 'count', 'dwell', 'left'].map((t) => `${types.filter((x) => x === t).length} ${t}`).join(', ')}`);
    const entered = published.filter((m) => (m.payload as { type: string }).type === 'entered');
    assert.ok(entered.length >= 2, `${entered.length} entered events`);
    // camera-1.jpg holds three 3s and a 1: every track is one of them
    for (const m of entered) {
      const p = m.payload as { label: string; trackId: number; best: { score: number } };
      assert.ok(['1', '3'].includes(p.label), `label ${p.label}`);
      assert.match(String(m.topic), /^porch\/right\/entered$/);
      assert.ok(p.best.score >= 0.5);
      assert.equal((await sharp(m.crop as Buffer).metadata()).format, 'jpeg');
      assert.ok(Buffer.isBuffer(m.snapshot));
    }
    // one entered per track and zone
    const ids = entered.map((m) => (m.payload as { trackId: number }).trackId);
    assert.equal(new Set(ids).size, ids.length, `track ids ${ids}`);
    const camera = node(id('ncs2-camera')) as unknown as { status: { args: Array<[{ text?: string }]> } };
    const still = camera.status.args.map((a) => a[0].text ?? '').filter((t) => /[1-9]\d* ncs2-camera.status.still/.test(t));
    assert.ok(still.length > 0, 'the still half of the clip shows as still frames in the status');
  });
});
