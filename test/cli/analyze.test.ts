import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveModel } from '../../src/cli/models';
import { Command } from 'commander';
import { runBench } from '../../src/cli/bench';
import { analyzeReportHtml, benchReportHtml, registerAnalyze, runAnalyze, writeReport } from '../../src/cli/analyze';

describe('ncs2 analyze (src/cli/analyze.ts)', function () {
  this.timeout(120_000);

  it('measures the sweeps for a bounded time and writes a self-contained HTML report with the three SVG charts', async function () {
    const model = await resolveModel('mlp');
    const started = Date.now();
    const result = await runAnalyze(model, { inFlight: [1, 4], batches: [1, 8], stepMs: 300, warmupMs: 100 });
    assert.ok(Date.now() - started < 60_000, 'bounded');
    assert.deepEqual(result.byInFlight.map((p) => p.x), [1, 4]);
    assert.deepEqual(result.byBatch.map((p) => p.x), [1, 8]);
    for (const p of [...result.byInFlight, ...result.byBatch]) assert.ok(p.inferencesPerSec > 0 && p.completed > 0);
    assert.ok(result.latenciesMs.length > 0);
    assert.ok(result.model.opsPerInference > 2 * 784 * 128);

    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-analyze-')), 'report.html');
    await writeReport(file, analyzeReportHtml(result));
    const html = await fs.readFile(file, 'utf8');
    assert.match(html, /^<!DOCTYPE html>/);
    for (const id of ['chart-inflight', 'chart-batch', 'chart-latency']) assert.match(html, new RegExp(`<svg id="${id}"`), id);
    // One point per measured configuration, histogram bars, and nothing fetched from elsewhere.
    assert.equal((html.match(/<circle class="point"/g) ?? []).length, 4);
    assert.ok((html.match(/<rect class="bar"/g) ?? []).length === 30);
    assert.doesNotMatch(html, /<script|src="http|href="http/);
    assert.doesNotMatch(html, /NaN|undefined/);
  });

  it('registerAnalyze adds `analyze <model> --report <file>` to a commander program', async function () {
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-analyze-')), 'cli.html');
    const program = new Command().exitOverride();
    registerAnalyze(program);
    const log = console.log;
    const printed: string[] = [];
    console.log = (...args: unknown[]) => void printed.push(args.join(' '));
    try {
      await program.parseAsync(['node', 'ncs2', 'analyze', 'mlp', '--in-flight', '1,2', '--batches', '2', '--step', '0.2', '--report', file]);
    } finally {
      console.log = log;
    }
    const html = await fs.readFile(file, 'utf8');
    assert.match(html, /<svg id="chart-inflight"/);
    assert.match(printed.join('\n'), /2 in flight/);
    const strict = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
    registerAnalyze(strict);
    await assert.rejects(strict.parseAsync(['node', 'ncs2', 'analyze', 'mlp', '--in-flight', '0']), /--in-flight must be a comma-separated list of positive integers/);
  });

  it('benchReportHtml (bench --report) renders a bench result with its charts', async function () {
    const model = await resolveModel('mlp');
    const r = await runBench(model, { devices: 1, workers: 1, threads: 1, parallel: 2, durationS: 0.3, warmupS: 0.1, batch: 1, shapes: {}, calibrate: false });
    const html = benchReportHtml(r);
    assert.match(html, /<svg id="chart-latency-percentiles"/);
    assert.doesNotMatch(html, /NaN|undefined|<script/);
  });
});
