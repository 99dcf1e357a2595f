import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as path from 'path';

/** The compiled CLI, run as a user runs it. */
const CLI = path.resolve(__dirname, '../../src/cli/ncs2.js');

function ncs2(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
  });
}

describe('cli/ncs2 bench --batch auto', function () {
  this.timeout(30_000);

  it('runs single-sample tasks through the engine\'s adaptive batching and reports what it did', async function () {
    const r = await ncs2(['bench', 'mlp', '--batch', 'auto', '--target-latency', '5', '--max-batch', '16', '--workers', '1', '--threads', '1', '--duration', '1', '--warmup', '0.3', '--no-calibrate', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.equal(b.config.batch, 'auto');
    // Each task is one sample; the engine coalesced them (32 in flight on one worker: two batches of 16).
    assert.deepEqual(b.model.inputs[0].dims, [1, 784]);
    assert.equal(b.config.parallel, 32);
    assert.equal(b.batching.enabled, true);
    assert.equal(b.batching.maxBatchSize, 16);
    assert.equal(b.batching.targetLatencyMs, 5);
    assert.ok(b.batching.avgBatchSize > 1 && b.batching.avgBatchSize <= 16, `average batch ${b.batching.avgBatchSize}`);
    assert.ok(b.batching.runs > 0 && b.batching.runs < b.completed, `${b.batching.runs} runs for ${b.completed} tasks`);
    assert.equal(b.failed, 0);
  });

  it('prints the batching line in the text report', async function () {
    const r = await ncs2(['bench', 'mlp', '--batch', 'auto', '--workers', '1', '--threads', '1', '--duration', '0.5', '--warmup', '0.2', '--no-calibrate']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /batch +auto: dynamic batching, [\d,]+ runs of [\d.]+ samples on average; cap now \d+ of 32, wait [\d.]+ ms, target p99 2\.00 ms/);
  });

  it('refuses batching options without --batch auto, and --batch auto on simulated sticks', async function () {
    const a = await ncs2(['bench', 'mlp', '--target-latency', '5']);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /--target-latency and --max-batch apply to --batch auto only/);
    const b = await ncs2(['bench', 'mlp', '--batch', 'auto', '--device', 'sim-ncs2']);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /--batch auto is for --device cpu/);
    const c = await ncs2(['bench', 'mlp', '--batch', 'many']);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /--batch must be a positive integer, got 'many'/);
  });
});
