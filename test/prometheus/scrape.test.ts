/**
 * /ncs2/metrics as Prometheus itself sees it: a real Node-RED runs the digit example, Debian's
 * `promtool check metrics` lints the exposition (a `quantile` label on a gauge, a counter without
 * `_total`, a bad unit suffix are all findings), and a real `prometheus` server scrapes the
 * endpoint and stores its `ncs2_` series.
 *
 * Needs Debian's prometheus package (promtool comes with it): `.ci/run` installs it and runs this
 * file as its own step (`npm run test:prometheus`); it is not part of `npm test`.
 */
import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { RedProcess, type DebugStream, type FlowNode } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';

const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';
const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not seen within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
}

describe('Prometheus: promtool and a real prometheus server against /ncs2/metrics of a running Node-RED', function () {
  this.timeout(180000);
  let red: RedProcess;
  let debug: DebugStream;

  before(async function () {
    for (const tool of [PROMTOOL, PROMETHEUS]) assert.ok(fs.existsSync(tool), `${tool} is missing: install Debian's prometheus package (apt-get install prometheus)`);
    red = await RedProcess.start();
    debug = await red.debugStream();
    const flow = JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', 'classify-mnist-digits.json'), 'utf8')) as FlowNode[];
    await red.deploy(flow, debug);
    // A few results so that graphs, stages and latency histograms have samples to expose.
    const inject = flow.find((n) => n.type === 'inject')!;
    const samples = path.join(ROOT, 'models', 'mnist', 'samples');
    const files = fs.readdirSync(samples).filter((f) => f.endsWith('.png')).slice(0, 5);
    for (const f of files) await red.inject(inject.id, [{ p: 'filename', v: path.join(samples, f), vt: 'str' }]);
    await debug.waitFor((m) => m.msg.includes('"inference"'), files.length, 30000, 'results of the digit example');
  });

  after(async function () {
    debug?.close();
    await red?.stop();
  });

  it('promtool check metrics finds nothing in the exposition', async function () {
    const res = await fetch(`${red.url}/ncs2/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^ncs2_inferences_total\{/m, 'the exposition has no inference counter');
    assert.match(text, /^ncs2_stage_latency_p99_seconds\{/m, 'the exposition has no stage latency');
    const lint = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(`${lint.stdout}${lint.stderr}`, '', 'promtool findings');
    assert.equal(lint.status, 0);
  });

  it('a prometheus server scrapes the endpoint and stores the ncs2_ series', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-prom-'));
    const port = await freePort();
    const target = new URL(red.url).host;
    fs.writeFileSync(
      path.join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node-red-ncs2\n    metrics_path: /ncs2/metrics\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    const server = spawn(PROMETHEUS, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    server.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    try {
      const api = `http://127.0.0.1:${port}/api/v1`;
      const health = await poll('the scrape target up', 60000, async () => {
        const body = (await (await fetch(`${api}/targets`)).json()) as { data: { activeTargets: Array<{ health: string; lastError: string }> } };
        const t = body.data.activeTargets[0];
        return t && t.health !== 'unknown' ? t : undefined;
      }).catch((err: Error) => assert.fail(`${err.message}\n${log}`));
      assert.equal(health.health, 'up', `scrape failed: ${health.lastError}`);
      const count = await poll('ncs2_ series in the TSDB', 30000, async () => {
        const q = encodeURIComponent('count({__name__=~"ncs2_.+"})');
        const body = (await (await fetch(`${api}/query?query=${q}`)).json()) as { data: { result: Array<{ value: [number, string] }> } };
        const n = Number(body.data.result[0]?.value[1] ?? 0);
        return n > 0 ? n : undefined;
      });
      assert.ok(count >= 20, `only ${count} ncs2_ series stored`);
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
