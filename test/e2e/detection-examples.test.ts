/**
 * The detection examples on a real Node-RED runtime (harness.ts): deployed through the admin API,
 * fed through their inject nodes, results read from the debug sidebar. The dashboard example's
 * page itself is rendered by test/browser/detections-dashboard.test.ts.
 *
 * camera-detections-to-mqtt: the MQTT out node publishes to a broker whose address is a setting of
 * the mqtt-broker config node. CI has no broker, so the test runs the example twice: against a
 * minimal MQTT 3.1.1 broker started here (CONNECT/PUBLISH/PINGREQ only, written with mqtt-packet,
 * which Node-RED's MQTT nodes already depend on) to see the published JSON, and against a port
 * where nothing listens, where the detections must still reach the debug sidebar.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { createRequire } from 'module';
import { RedProcess, type DebugMessage, type DebugStream, type FlowNode } from './harness';
import { ROOT } from './red-boot';

const SAMPLES = path.join(ROOT, 'models', 'digit-detector', 'samples');
const OCR_SAMPLES = path.join(ROOT, 'models', 'ocr-samples');
const OCR_TRUTH = JSON.parse(fs.readFileSync(path.join(OCR_SAMPLES, 'ground-truth.json'), 'utf8')) as Record<string, string[]>;
const TRUTH = JSON.parse(fs.readFileSync(path.join(SAMPLES, 'camera-ground-truth.json'), 'utf8')) as { samples: Array<{ file: string; boxes: Array<{ label: string }> }> };

interface MqttPacket {
  cmd: string;
  topic?: string;
  payload?: Buffer;
  messageId?: number;
}
interface MqttPacketModule {
  parser(options: { protocolVersion: number }): { on(e: 'packet', cb: (p: MqttPacket) => void): void; on(e: 'error', cb: (e: Error) => void): void; parse(b: Buffer): void };
  generate(packet: Record<string, unknown>): Buffer;
}
const mqttPacket = createRequire(require.resolve('mqtt/package.json'))('mqtt-packet') as MqttPacketModule;

/** Just enough of an MQTT broker to receive QoS 0 publishes. */
class TinyBroker {
  readonly published: Array<{ topic: string; payload: string }> = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly server = net.createServer((socket) => {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      else if (p.cmd === 'pingreq') socket.write(mqttPacket.generate({ cmd: 'pingresp' }));
      else if (p.cmd === 'publish') this.published.push({ topic: p.topic!, payload: p.payload!.toString() });
      else if (p.cmd === 'disconnect') socket.end();
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  });

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function loadExample(file: string): FlowNode[] {
  // Inject nodes fire only when the test says so.
  return (JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', file), 'utf8')) as FlowNode[]).map((n) => (n.type === 'inject' ? { ...n, once: false, repeat: '' } : n));
}

const byName = (flow: FlowNode[], type: string, name: string): FlowNode => {
  const found = flow.find((n) => n.type === type && n.name === name);
  assert.ok(found, `no ${type} '${name}' in the example`);
  return found;
};

interface Published {
  camera: string;
  count: number;
  detections: Array<{ label: string; score: number; box: { x: number; y: number; w: number; h: number } }>;
}

describe('detection examples on a real Node-RED runtime', function () {
  this.timeout(120000);
  let red: RedProcess;
  let debug: DebugStream;

  before(async function () {
    // httpNodeRoot '/': the dashboard serves its pages there, as in a default install.
    red = await RedProcess.start({ settings: { debugMaxLength: 20000, httpNodeRoot: '/' } });
    debug = await red.debugStream();
  });

  after(async function () {
    debug?.close();
    await red?.stop();
  });

  const errorsOf = (flow: FlowNode[]) => {
    const errorsDebug = byName(flow, 'debug', 'errors').id;
    return debug.messages.filter((m) => m.id === errorsDebug || (m.level === 20 && flow.some((n) => n.id === m.id)));
  };

  async function snapshot(flow: FlowNode[], k: number): Promise<Published> {
    const inject = flow.find((n) => n.type === 'inject')!;
    const sink = byName(flow, 'debug', 'detections').id;
    const before = debug.messages.filter((m) => m.id === sink).length;
    await red.inject(inject.id, [{ p: 'filename', v: path.join(SAMPLES, TRUTH.samples[k].file), vt: 'str' }]);
    const seen = await debug.waitFor((m) => m.id === sink, before + 1, 30000, `detections for ${TRUTH.samples[k].file}`);
    const last: DebugMessage = seen[seen.length - 1];
    return JSON.parse(last.msg) as Published;
  }

  function assertMatchesTruth(published: Published, k: number): void {
    const truth = TRUTH.samples[k].boxes.map((b) => b.label).sort();
    assert.equal(published.camera, 'porch');
    assert.equal(published.count, published.detections.length);
    assert.deepEqual(published.detections.map((d) => d.label).sort(), truth, `digits in ${TRUTH.samples[k].file}`);
    for (const d of published.detections) assert.ok(d.box.x >= 0 && d.box.x + d.box.w <= 320 && d.box.y + d.box.h <= 240 && d.score >= 0.5);
  }

  it('camera-detections-to-mqtt: detections reach the debug sidebar and the broker set on the mqtt-broker config', async function () {
    const broker = new TinyBroker();
    const port = await broker.listen();
    try {
      const flow = loadExample('camera-detections-to-mqtt.json');
      Object.assign(flow.find((n) => n.type === 'mqtt-broker')!, { broker: '127.0.0.1', port: String(port) });
      await red.deploy(flow, debug);
      // camera-2 holds three digits, camera-0 two.
      for (const k of [2, 0]) {
        const published = await snapshot(flow, k);
        assertMatchesTruth(published, k);
        const deadline = Date.now() + 15000;
        while (!broker.published.some((p) => (JSON.parse(p.payload) as Published).count === published.count && p.topic === 'camera/porch/detections') && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const sent = broker.published.filter((p) => p.topic === 'camera/porch/detections').map((p) => JSON.parse(p.payload) as Published);
        assert.ok(sent.some((s) => JSON.stringify(s.detections) === JSON.stringify(published.detections)), `the broker got ${JSON.stringify(sent)}`);
      }
      assert.deepEqual(errorsOf(flow).map((m) => m.msg), []);
    } finally {
      await broker.close();
    }
  });

  it('camera-detections-to-mqtt without a reachable broker: the flow keeps detecting', async function () {
    const flow = loadExample('camera-detections-to-mqtt.json');
    Object.assign(flow.find((n) => n.type === 'mqtt-broker')!, { broker: '127.0.0.1', port: String(await closedPort()) });
    debug.clear();
    await red.deploy(flow, debug);
    for (const k of [1, 3]) assertMatchesTruth(await snapshot(flow, k), k);
    assert.deepEqual(errorsOf(flow).map((m) => m.msg), []);
  });

  it('detections-dashboard: deploys with its Dashboard 2.0 page; each frame gives table rows of the digits in it', async function () {
    const flow = loadExample('detections-dashboard.json');
    debug.clear();
    await red.deploy(flow, debug);
    const inject = flow.find((n) => n.type === 'inject')!;
    const readings = byName(flow, 'debug', 'readings').id;
    for (const k of [0, 2]) {
      const before = debug.messages.filter((m) => m.id === readings).length;
      await red.inject(inject.id, [{ p: 'filename', v: path.join(SAMPLES, TRUTH.samples[k].file), vt: 'str' }]);
      const seen = await debug.waitFor((m) => m.id === readings, before + 1, 30000, `readings for ${TRUTH.samples[k].file}`);
      const rows = JSON.parse(seen[seen.length - 1].msg) as Array<{ label: string; score: string; x: number; y: number; w: number; h: number }>;
      assert.deepEqual(rows.map((r) => r.label).sort(), TRUTH.samples[k].boxes.map((b) => b.label).sort());
      for (const r of rows) assert.ok(Number(r.score) >= 0.5 && r.x >= 0 && r.x + r.w <= 320 && r.y + r.h <= 240, JSON.stringify(r));
    }
    assert.deepEqual(errorsOf(flow).map((m) => m.msg), []);
    const page = await red.request('GET', '/dashboard/detections');
    assert.equal(page.status, 200, 'the dashboard serves the page');
  });

  it('detections-dashboard, meter page: each meter photo gives one table row per text line, reading its true text', async function () {
    const flow = loadExample('detections-dashboard.json');
    debug.clear();
    await red.deploy(flow, debug);
    const inject = byName(flow, 'inject', 'meter photo (every 5 s)').id;
    const readings = byName(flow, 'debug', 'meter readings').id;
    for (const file of ['meter-01.png', 'meter-05.png']) {
      const before = debug.messages.filter((m) => m.id === readings).length;
      await red.inject(inject, [{ p: 'filename', v: path.join(OCR_SAMPLES, file), vt: 'str' }]);
      const seen = await debug.waitFor((m) => m.id === readings, before + 1, 30000, `meter readings for ${file}`);
      const rows = JSON.parse(seen[seen.length - 1].msg) as Array<{ text: string; confidence: string; x: number; y: number }>;
      assert.deepEqual(rows.map((r) => r.text), OCR_TRUTH[file]);
      for (const r of rows) assert.ok(Number(r.confidence) > 0.5 && r.x >= 0 && r.y >= 0, JSON.stringify(r));
    }
    assert.deepEqual(errorsOf(flow).map((m) => m.msg), []);
    assert.equal((await red.request('GET', '/dashboard/meter')).status, 200, 'the dashboard serves the meter page');
  });
});
