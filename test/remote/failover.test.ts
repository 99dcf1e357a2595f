import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import { CpuDevice, InferenceEngine, createDevice, type RemoteDevice, type TensorData } from '../../src/engine';
import { MLP, makeRepository, startServe, type ServerProcess } from './servers';

const TASKS = 600;
const KILL_AFTER = 150;
const CONCURRENCY = 16;
const SEEDS = 8;

function mlpFeeds(seed: number): Record<string, TensorData> {
  const data = new Float32Array(64);
  for (let i = 0; i < data.length; i++) data[i] = Math.cos(i * 0.21 + seed);
  return { input: { type: 'float32', dims: [1, 64], data } };
}

describe('remote members: kill -9 of one of two servers mid-run', function () {
  this.timeout(180_000);
  let repo: string;
  const servers: ServerProcess[] = [];

  before(async () => {
    repo = await makeRepository();
  });

  after(async () => {
    for (const s of servers) await s.stop();
    await fs.rm(repo, { recursive: true, force: true });
  });

  it('every task is answered exactly once with the right numbers; the killed one is probed and back in use after a restart', async () => {
    const expected: Float32Array[] = [];
    const local = new InferenceEngine({ devices: [new CpuDevice({ id: 'local', workers: 1 })] });
    const g0 = await local.loadGraph(MLP);
    for (let seed = 0; seed < SEEDS; seed++) expected.push((await local.submit(g0, mlpFeeds(seed))).outputs.output.data as Float32Array);
    await local.close();

    const [a, b] = await Promise.all([startServe(['--models', repo, '--workers', '1']), startServe(['--models', repo, '--workers', '1'])]);
    servers.push(a, b);
    const deviceA = createDevice({ kind: 'remote', id: 'server-a', url: a.url, model: 'mlp', timeoutMs: 5_000 }) as RemoteDevice;
    const deviceB = createDevice({ kind: 'remote', id: 'server-b', url: b.url, model: 'mlp', timeoutMs: 5_000 }) as RemoteDevice;
    const engine = new InferenceEngine({ devices: [deviceA, deviceB] });
    try {
      const g = await engine.loadGraph(MLP);
      const settled = new Array<number>(TASKS).fill(0);
      const failures: string[] = [];
      const byDevice: Record<string, number> = {};
      let completed = 0;
      let next = 0;
      let killed = false;
      const worker = async () => {
        while (next < TASKS) {
          const id = next++;
          const seed = id % SEEDS;
          try {
            const r = await engine.submit(g, mlpFeeds(seed));
            settled[id]++;
            byDevice[r.deviceId] = (byDevice[r.deviceId] ?? 0) + 1;
            const out = r.outputs.output.data as Float32Array;
            for (let i = 0; i < out.length; i++) assert.ok(Math.abs(out[i] - expected[seed][i]) < 1e-5, `task ${id}: element ${i} is ${out[i]}, expected ${expected[seed][i]}`);
          } catch (err) {
            settled[id]++;
            failures.push(`task ${id}: ${(err as Error).message}`);
          }
          if (++completed === KILL_AFTER && !killed) {
            killed = true;
            a.proc.kill('SIGKILL');
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      assert.deepEqual(failures, []);
      assert.ok(settled.every((n) => n === 1), 'a task settled other than once');
      const stats = engine.getStats().graphs[g.id];
      assert.deepEqual([stats.submitted, stats.completed, stats.failed], [TASKS, TASKS, 0]);
      assert.ok(stats.retried > 0, 'no task was retried: the kill hit nothing in flight');
      assert.equal(await a.exited, 'SIGKILL');
      assert.equal(deviceA.stats().state, 'down');
      assert.match(deviceA.stats().down!.reason, /inference server http:\/\/127\.0\.0\.1:\d+/);
      assert.ok(byDevice['server-b'] > byDevice['server-a'], JSON.stringify(byDevice));

      // restarted on the same port: the probes find it and it takes work again
      const restarted = await startServe(['--models', repo, '--workers', '1', '--port', String(a.port)]);
      servers.push(restarted);
      const back = performance.now();
      while (deviceA.stats().state !== 'up') {
        assert.ok(performance.now() - back < 5_000, `not back in use within 5 s: ${JSON.stringify(deviceA.stats().down)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const r = await engine.submit(g, mlpFeeds(3), { deviceId: 'server-a' });
      assert.equal(r.deviceId, 'server-a');
    } finally {
      await engine.close();
    }
  });
});
