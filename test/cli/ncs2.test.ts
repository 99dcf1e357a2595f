import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The compiled CLI, run as a user runs it (a separate process, arguments, stdout/stderr, exit code). */
const CLI = path.resolve(__dirname, '../../src/cli/ncs2.js');
/** 2 x 784 x 128 + 128 (bias) + 128 (Relu) + 2 x 128 x 10 + 10 (bias), counted by hand. */
const MLP_OPS = 203_530;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ncs2(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('cli/ncs2', function () {
  this.timeout(30_000);
  let cacheDir: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    // A fresh peak cache: the bench below must measure the peak itself, never find one lying around.
    cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-cli-test-'));
    // this host is shared: other processes' load must not keep the peak out of the cache here
    env = { NCS2_CACHE_DIR: cacheDir, NCS2_PEAK_MAX_OTHER_LOAD: '1' };
  });

  after(async () => {
    await fs.rm(cacheDir, { recursive: true, force: true });
  });

  it('devices --json lists the cpu with its cores, model and default split', async () => {
    const r = await ncs2(['devices', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.devices.length, 1);
    const cpu = report.devices[0];
    assert.equal(cpu.id, 'cpu');
    assert.equal(cpu.kind, 'cpu');
    assert.equal(cpu.simulated, false);
    assert.equal(cpu.cores, os.availableParallelism());
    assert.equal(cpu.cpuModel, os.cpus()[0].model);
    assert.ok(cpu.defaultSplit.workers >= 1 && cpu.defaultSplit.threadsPerWorker >= 1);
    assert.ok(cpu.defaultSplit.workers * cpu.defaultSplit.threadsPerWorker <= cpu.cores, 'the default split must not oversubscribe the cores');
    assert.equal(cpu.peak, null, 'nothing is measured in a fresh cache');
    assert.equal(report.peakCache, path.join(cacheDir, 'peak.json'));
  });

  it('bench mlp --duration 1 --json measures plausible figures against a measured peak', async () => {
    const r = await ncs2(['bench', 'mlp', '--duration', '1', '--warmup', '0.3', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', 'no progress output when stderr is not a terminal');
    const b = JSON.parse(r.stdout);
    assert.equal(b.simulated, false);
    assert.ok(b.throughput > 0, `throughput ${b.throughput}`);
    const l = b.latencyMs;
    assert.ok(l.p50 > 0 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, `latency ${JSON.stringify(l)}`);
    assert.equal(b.opsPerInference, MLP_OPS);
    assert.ok(Math.abs(b.tops - (b.throughput * MLP_OPS) / 1e12) < 1e-9, 'tops = throughput x counted ops');
    // Measured in this run (fresh cache), for the chosen split, at the model's precision.
    assert.equal(b.peak.precision, 'fp32');
    assert.equal(b.peak.source, 'measured');
    assert.ok(b.peak.opsPerSec > 1e9, `peak ${b.peak.opsPerSec}`);
    assert.ok(b.utilization > 0 && b.utilization < 1, `utilization ${b.utilization}`);
    assert.ok(Math.abs(b.utilization - (b.tops * 1e12) / b.peak.opsPerSec) < 1e-9);
    for (const k of ['p50', 'p99', 'max', 'mean']) assert.ok(b.eventLoopDelayMs[k] >= 0, `eventLoopDelayMs.${k}`);
    assert.equal(b.config.device, 'cpu');
    assert.equal(b.config.batch, 1);
    assert.ok(b.config.parallel >= 1);
    assert.ok(b.config.workers * b.config.threads <= os.availableParallelism());
    // --workers auto (the default) measured every non-oversubscribing split and kept the best.
    const splits = b.splits as Array<{ workers: number; threads: number; throughput: number; chosen: boolean }>;
    if (os.availableParallelism() > 1) {
      assert.ok(splits.length >= 2, `splits ${JSON.stringify(splits)}`);
      const chosen = splits.filter((s) => s.chosen);
      assert.equal(chosen.length, 1);
      assert.equal(chosen[0].throughput, Math.max(...splits.map((s) => s.throughput)));
      assert.deepEqual([chosen[0].workers, chosen[0].threads], [b.config.workers, b.config.threads]);
    }
    // The calibration is cached for the next run on this host.
    const cache = JSON.parse(await fs.readFile(path.join(cacheDir, 'peak.json'), 'utf8'));
    assert.equal(cache.entries[b.peak.key].fp32, b.peak.opsPerSec);
  });

  it('bench --no-calibrate without a cached peak gives utilization null with a reason', async () => {
    const r = await ncs2(['bench', 'mlp', '--workers', '1', '--threads', '1', '--duration', '0.5', '--warmup', '0.2', '--no-calibrate', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.equal(b.utilization, null);
    assert.match(b.utilizationReason, /not measured/);
    assert.deepEqual(b.splits, []);
    assert.equal(b.config.split, 'fixed');
  });

  describe('bad arguments fail with a clear message and a non-zero exit', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['missing model', ['bench'], /missing required argument 'model'/],
      ['negative duration', ['bench', 'mlp', '--duration', '-1'], /--duration must be a number of seconds > 0, got '-1'/],
      ['non-numeric parallel', ['bench', 'mlp', '--parallel', 'lots'], /--parallel must be a positive integer, got 'lots'/],
      ['zero workers', ['bench', 'mlp', '--workers', '0'], /--workers must be a positive integer, got '0'/],
      ['unknown device kind', ['bench', 'mlp', '--device', 'gpu'], /Allowed choices are cpu/],
      ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
      ['too many devices', ['bench', 'mlp', '--devices', String(os.availableParallelism() + 1)], /less than one core per device/],
      ['missing model file', ['bench', 'no-such-model.onnx'], /cannot read model 'no-such-model.onnx': no such file; expected a path to an .onnx file or one of the built-in models: mlp, cnn/],
    ];
    for (const [name, args, message] of cases) {
      it(name, async () => {
        const r = await ncs2(args, env);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, message);
        assert.equal(r.stdout, '');
      });
    }

    it('a file that is not an ONNX model', async () => {
      const file = path.join(cacheDir, 'not-a-model.onnx');
      await fs.writeFile(file, 'this is text, not a protobuf');
      const r = await ncs2(['bench', file], env);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot load model/);
    });
  });
});
