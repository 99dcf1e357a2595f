/**
 * `ncs2 analyze <model> [--device cpu] [--report out.html]` and `ncs2 bench --report <file>`:
 * measure one model through the engine for a bounded time and write a report a person can look
 * at: throughput against requests in flight and against batch size, and the latency distribution.
 *
 * The charts are SVG written here by hand: no chart library is installed (and none may be added
 * for this), and a report that loads a script from a CDN would not open on an offline edge box.
 * Everything is inline in one HTML file.
 */
import { promises as fs } from 'fs';
import { performance } from 'perf_hooks';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { runEngineConfig, hostInfo, type BenchResult } from './bench';
import { resolveInputDims, resolveModel, type BenchModel } from './models';
import { PerformanceAnalyzer } from '../engine';
import type { PerformanceAnalysis, TaskEvent } from '../engine';
import type { Progress } from './load';

export interface AnalyzeOptions {
  device: 'cpu';
  /** Requests in flight to measure at batch 1. */
  inFlight: number[];
  /** Samples per task to measure (skipped when the model's batch dimension is fixed). */
  batches: number[];
  /** Measured time per point, after warmupMs. */
  stepMs: number;
  warmupMs: number;
  workers?: number;
  threads?: number;
  shapes?: Record<string, number[]>;
  onProgress?(label: string, p: Progress): void;
}

export interface SweepPoint {
  x: number;
  inferencesPerSec: number;
  p50: number;
  p99: number;
  completed: number;
}

export interface AnalyzeResult {
  model: { name: string; description: string; opsPerInference: number };
  device: string;
  byInFlight: SweepPoint[];
  byBatch: SweepPoint[];
  /** Why the batch sweep is empty, when it is. */
  batchSkipped?: string;
  /** Task latencies (ms) of the best in-flight point's measured window. */
  latenciesMs: number[];
  analysis: PerformanceAnalysis;
  host: BenchResult['host'];
  measuredAt: string;
}

export const DEFAULT_ANALYZE: AnalyzeOptions = { device: 'cpu', inFlight: [1, 2, 4, 8, 16], batches: [1, 2, 4, 8, 16], stepMs: 1500, warmupMs: 500 };

/** Runs the sweeps; every point is a fresh engine (runEngineConfig), so points do not warm each other. */
export async function runAnalyze(model: BenchModel, options: Partial<AnalyzeOptions> = {}): Promise<AnalyzeResult> {
  const o = { ...DEFAULT_ANALYZE, ...options };
  const split = { workers: o.workers ?? 1, threads: o.threads ?? 1 };
  const base = { devices: 1, ...split, warmupMs: o.warmupMs, durationMs: o.stepMs, feedMode: 'copy' as const };
  let opsPerInference = 0;
  let eventLoopP99 = 0;
  let occupancy = 0;
  let utilization: number | null = null;
  let queueDepth = 0;
  let best: { point: SweepPoint; latencies: number[] } | undefined;

  const byInFlight: SweepPoint[] = [];
  const dims1 = resolveInputDims(model.info, 1, o.shapes ?? {});
  for (const parallel of o.inFlight) {
    const latencies: number[] = [];
    let measureFrom = Infinity;
    const r = await runEngineConfig(model, dims1, { ...base, parallel }, {
      label: `${parallel} in flight`,
      onProgress: o.onProgress,
      beforeLoad: async (engine) => {
        // Latencies of the measured window only: tasks finishing in the warm-up are left out.
        const startedAt = performance.now();
        measureFrom = startedAt + o.warmupMs;
        engine.on('task', (e: TaskEvent) => {
          if (performance.now() >= measureFrom) latencies.push(e.timings.totalMs);
        });
      },
      afterRun: (engine, handle) => {
        opsPerInference = handle.ops.total;
        const s = engine.getStats();
        const d = Object.values(s.devices)[0];
        occupancy = d?.occupancy ?? 0;
        utilization = d?.utilization ?? null;
        eventLoopP99 = s.eventLoopDelayMs.p99;
        queueDepth = s.graphs[handle.id]?.queueDepth ?? 0;
      },
    });
    const point = { x: parallel, inferencesPerSec: r.inferencesPerSec, p50: r.latencyMs.p50, p99: r.latencyMs.p99, completed: r.completed };
    byInFlight.push(point);
    if (!best || point.inferencesPerSec > best.point.inferencesPerSec) best = { point, latencies };
  }

  const byBatch: SweepPoint[] = [];
  let batchSkipped: string | undefined;
  const first = model.info.inputs[0]?.dims[0];
  if (typeof first === 'number' && first > 0) {
    batchSkipped = `the model's batch dimension is fixed at ${first}`;
  } else {
    const parallel = best?.point.x ?? 2;
    for (const batch of o.batches) {
      const dims = resolveInputDims(model.info, batch, o.shapes ?? {});
      const r = await runEngineConfig(model, dims, { ...base, parallel }, { label: `batch ${batch}`, onProgress: o.onProgress });
      byBatch.push({ x: batch, inferencesPerSec: r.inferencesPerSec, p50: r.latencyMs.p50, p99: r.latencyMs.p99, completed: r.completed });
    }
  }

  const top = best!.point;
  const analysis = PerformanceAnalyzer.analyzePerformance({
    throughputFps: top.inferencesPerSec,
    latencyMs: top.p50,
    deviceCount: 1,
    opsPerInference,
    devices: [{ deviceId: 'cpu', kind: 'cpu', peakTops: null, occupancy, utilization }],
    batchSize: 1,
    batchable: batchSkipped === undefined,
    batchingEnabled: false,
    queueDepth,
    requestsInFlight: top.x,
    eventLoopDelayP99Ms: eventLoopP99,
  });
  return {
    model: { name: model.name, description: model.description, opsPerInference },
    device: `cpu (${split.workers} worker x ${split.threads} thread)`,
    byInFlight,
    byBatch,
    ...(batchSkipped ? { batchSkipped } : {}),
    latenciesMs: best!.latencies,
    analysis,
    host: hostInfo(),
    measuredAt: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------- SVG

const W = 560;
const H = 300;
const PAD = { left: 64, right: 16, top: 28, bottom: 44 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

/** Rounded axis top: 1, 2 or 5 x 10^k above the maximum. */
function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(id: string, title: string, xLabel: string, yLabel: string, yMax: number, body: string): string {
  const ph = H - PAD.top - PAD.bottom;
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const y = PAD.top + ph - f * ph;
      return `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end" font-size="11">${fmt(f * yMax)}</text>`;
    })
    .join('');
  return `<svg id="${id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">
<text x="${W / 2}" y="16" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>${ticks}
<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#333"/><line x1="${PAD.left}" x2="${W - PAD.right}" y1="${H - PAD.bottom}" y2="${H - PAD.bottom}" stroke="#333"/>
<text x="${W / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>
<text transform="translate(14 ${PAD.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>
${body}</svg>`;
}

/** Throughput (and p99 latency as a dashed second series on its own scale) against x, categorical x. */
export function sweepChart(id: string, title: string, xLabel: string, points: SweepPoint[]): string {
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  if (points.length === 0) return frame(id, title, xLabel, 'inferences/s', 1, `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no points measured</text>`);
  const yMax = niceMax(Math.max(...points.map((p) => p.inferencesPerSec)));
  const lMax = niceMax(Math.max(...points.map((p) => p.p99)));
  const x = (i: number) => PAD.left + (points.length === 1 ? pw / 2 : (i * pw) / (points.length - 1));
  const y = (v: number, max: number) => PAD.top + ph - (v / max) * ph;
  const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.inferencesPerSec, yMax).toFixed(1)}`).join(' ');
  const lat = points.map((p, i) => `${x(i).toFixed(1)},${y(p.p99, lMax).toFixed(1)}`).join(' ');
  const marks = points
    .map((p, i) => `<circle class="point" cx="${x(i).toFixed(1)}" cy="${y(p.inferencesPerSec, yMax).toFixed(1)}" r="4" fill="#1f77b4"><title>${p.x}: ${fmt(p.inferencesPerSec)} inferences/s, p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms</title></circle><text x="${x(i).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle" font-size="11">${p.x}</text>`)
    .join('');
  const body = `<polyline points="${line}" fill="none" stroke="#1f77b4" stroke-width="2"/><polyline points="${lat}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 4"/>${marks}
<text x="${W - PAD.right}" y="${PAD.top + 12}" text-anchor="end" font-size="11" fill="#d62728">dashed: p99 latency (top = ${fmt(lMax)} ms)</text>`;
  return frame(id, title, xLabel, 'inferences/s', yMax, body);
}

/** Histogram of latencies in 30 equal bins between the minimum and the 99.9th percentile. */
export function latencyChart(id: string, latenciesMs: number[]): string {
  const title = 'Latency distribution (submission to result)';
  if (latenciesMs.length === 0) return frame(id, title, 'ms', 'tasks', 1, `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no task latencies recorded</text>`);
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  const lo = sorted[0];
  // The far tail would squeeze every other bar into one; it is counted in the last bin.
  const hi = Math.max(q(0.999), lo + 1e-3);
  const bins = 30;
  const counts = new Array<number>(bins).fill(0);
  for (const v of sorted) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]++;
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const yMax = niceMax(Math.max(...counts));
  const bw = pw / bins;
  const bars = counts
    .map((c, i) => {
      const h = (c / yMax) * ph;
      const from = lo + ((hi - lo) * i) / bins;
      return `<rect class="bar" x="${(PAD.left + i * bw + 1).toFixed(1)}" y="${(PAD.top + ph - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="#2ca02c"><title>${fmt(from)}-${fmt(from + (hi - lo) / bins)} ms: ${c}</title></rect>`;
    })
    .join('');
  const axis = [0, 0.5, 1].map((f) => `<text x="${(PAD.left + f * pw).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle" font-size="11">${fmt(lo + f * (hi - lo))}</text>`).join('');
  const marks = ([['p50', 0.5], ['p99', 0.99]] as const)
    .map(([name, p]) => {
      const xv = PAD.left + ((Math.min(q(p), hi) - lo) / (hi - lo)) * pw;
      return `<line x1="${xv.toFixed(1)}" x2="${xv.toFixed(1)}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#333" stroke-dasharray="3 3"/><text x="${(xv + 3).toFixed(1)}" y="${PAD.top + 12}" font-size="11">${name} ${fmt(q(p))} ms</text>`;
    })
    .join('');
  return frame(id, title, `latency, ms (${sorted.length} tasks)`, 'tasks', yMax, bars + axis + marks);
}

const STYLE = 'body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555}';

function table(points: SweepPoint[], xName: string): string {
  const rows = points.map((p) => `<tr><td>${p.x}</td><td>${fmt(p.inferencesPerSec)}</td><td>${fmt(p.p50)}</td><td>${fmt(p.p99)}</td><td>${p.completed}</td></tr>`).join('');
  return `<table><tr><th>${esc(xName)}</th><th>inferences/s</th><th>p50 ms</th><th>p99 ms</th><th>tasks</th></tr>${rows}</table>`;
}

function recommendations(a: PerformanceAnalysis): string {
  if (a.recommendations.length === 0) return '<p>No recommendation: none of the analyzer\'s rules found its evidence in this run.</p>';
  return `<ul>${a.recommendations.map((r) => `<li>${esc(r.message)} <span class="note">(${esc(Object.entries(r.evidence).map(([k, v]) => `${k}=${v}`).join(', '))})</span></li>`).join('')}</ul>`;
}

export function analyzeReportHtml(r: AnalyzeResult): string {
  const a = r.analysis;
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ncs2 analyze: ${esc(r.model.name)}</title><style>${STYLE}</style></head>
<body>
<h1>ncs2 analyze: ${esc(r.model.name)}</h1>
<p>${esc(r.model.description)}; ${fmt(r.model.opsPerInference)} ops per inference (counted from the graph). Device: ${esc(r.device)}. Host: ${esc(r.host.cpu)}, ${r.host.cores} cores, Node ${esc(r.host.node)}, onnxruntime-node ${esc(r.host.onnxruntime)}, load average ${r.host.loadAverage1m.toFixed(2)}. Measured ${esc(r.measuredAt)}.</p>
<div class="charts">
${sweepChart('chart-inflight', 'Throughput vs requests in flight (batch 1)', 'requests in flight', r.byInFlight)}
${r.byBatch.length ? sweepChart('chart-batch', 'Throughput vs batch size', 'samples per task', r.byBatch) : `<p class="note">Batch sweep skipped: ${esc(r.batchSkipped ?? 'no batch sizes given')}.</p>`}
${latencyChart('chart-latency', r.latenciesMs)}
</div>
<h2>Measurements</h2>
${table(r.byInFlight, 'in flight')}
${r.byBatch.length ? table(r.byBatch, 'batch') : ''}
<h2>Analysis (best in-flight point)</h2>
<table>
<tr><th>throughput</th><td>${fmt(a.throughputFps)} inferences/s</td></tr>
<tr><th>latency p50</th><td>${fmt(a.latencyMs)} ms</td></tr>
<tr><th>achieved</th><td>${a.totalTops.toPrecision(3)} TOPS</td></tr>
<tr><th>vs device ceiling</th><td>${a.theoreticalTops === null ? 'n/a (no measured peak for this device)' : pct(a.efficiencyVsTheoretical)}</td></tr>
<tr><th>link bandwidth used</th><td>${a.bandwidthUtilization === null ? 'n/a (no USB link)' : pct(a.bandwidthUtilization)}</td></tr>
</table>
<h2>Recommendations</h2>
${recommendations(a)}
</body></html>
`;
}

/** The `bench --report` variant: one bench result, its latency percentiles and its split trials. */
export function benchReportHtml(r: BenchResult): string {
  const splits: SweepPoint[] = r.splits.map((s) => ({ x: s.workers, inferencesPerSec: s.throughput, p50: s.latencyP50Ms, p99: s.latencyP50Ms, completed: 0 }));
  const pcts: SweepPoint[] = [
    { x: 50, inferencesPerSec: r.latencyMs.p50, p50: r.latencyMs.p50, p99: r.latencyMs.p50, completed: r.latencyMs.count },
    { x: 95, inferencesPerSec: r.latencyMs.p95, p50: r.latencyMs.p95, p99: r.latencyMs.p95, completed: r.latencyMs.count },
    { x: 99, inferencesPerSec: r.latencyMs.p99, p50: r.latencyMs.p99, p99: r.latencyMs.p99, completed: r.latencyMs.count },
  ];
  const c = r.config;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ncs2 bench: ${esc(r.model.name)}</title><style>${STYLE}</style></head>
<body>
<h1>ncs2 bench: ${esc(r.model.name)}</h1>
<p>${esc(r.model.description)}. ${c.devices} cpu device(s), ${c.workers} worker(s) x ${c.threads} thread(s), ${c.parallel} in flight, batch ${c.batch}, ${c.durationS} s. Host: ${esc(r.host.cpu)}, ${r.host.cores} cores.</p>
<table>
<tr><th>throughput</th><td>${fmt(r.throughput)} inferences/s</td></tr>
<tr><th>latency</th><td>p50 ${fmt(r.latencyMs.p50)} / p95 ${fmt(r.latencyMs.p95)} / p99 ${fmt(r.latencyMs.p99)} / max ${fmt(r.latencyMs.max)} ms</td></tr>
<tr><th>achieved</th><td>${r.tops.toPrecision(3)} TOPS</td></tr>
<tr><th>utilization</th><td>${r.utilization === null ? `n/a: ${esc(r.utilizationReason ?? '')}` : `${(r.utilization * 100).toFixed(1)}%`}</td></tr>
</table>
<div class="charts">
${splits.length ? sweepChart('chart-splits', 'Throughput per worker split (--workers auto)', 'workers', splits) : ''}
${sweepChart('chart-latency-percentiles', 'Latency percentiles (ms)', 'percentile', pcts).replace(/inferences\/s/g, 'ms')}
</div>
</body></html>
`;
}

export async function writeReport(file: string, html: string): Promise<void> {
  await fs.writeFile(file, html, 'utf8');
}

/** "1,2,4,8" -> [1, 2, 4, 8] (positive integers). */
function intList(name: string) {
  return (value: string): number[] => {
    const list = value.split(',').map((v) => Number(v.trim()));
    if (list.length === 0 || list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError(`${name} must be a comma-separated list of positive integers, got '${value}'.`);
    return list;
  };
}

/**
 * Registers `ncs2 analyze` on the program (src/cli/ncs2.ts calls it). Prints a summary, and the
 * HTML report to --report when given.
 */
export function registerAnalyze(program: Command): Command {
  return program
    .command('analyze')
    .description('measure throughput vs requests in flight and batch size, and the latency distribution, and explain the result')
    .argument('<model>', 'an .onnx file, or a built-in generated model (mlp, cnn)')
    .addOption(new Option('--device <kind>', 'device kind').choices(['cpu']).default('cpu'))
    .option('--in-flight <list>', 'requests in flight to measure (batch 1)', intList('--in-flight'), DEFAULT_ANALYZE.inFlight)
    .option('--batches <list>', 'batch sizes to measure', intList('--batches'), DEFAULT_ANALYZE.batches)
    .option('--step <s>', 'measured seconds per point', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`--step must be a number of seconds > 0, got '${v}'.`);
      return n;
    }, DEFAULT_ANALYZE.stepMs / 1000)
    .option('--report <file>', 'write an HTML report with SVG charts')
    .option('--json', 'print one JSON object')
    .action(async (modelSpec: string, opts: { device: 'cpu'; inFlight: number[]; batches: number[]; step: number; report?: string; json?: boolean }) => {
      const model = await resolveModel(modelSpec);
      const result = await runAnalyze(model, { device: opts.device, inFlight: opts.inFlight, batches: opts.batches, stepMs: opts.step * 1000 });
      if (opts.report) await writeReport(opts.report, analyzeReportHtml(result));
      if (opts.json) {
        process.stdout.write(JSON.stringify({ ...result, latenciesMs: undefined, latencyCount: result.latenciesMs.length }, null, 2) + '\n');
        return;
      }
      const lines = [`${model.name} on ${result.device}`];
      for (const p of result.byInFlight) lines.push(`  ${String(p.x).padStart(3)} in flight  ${fmt(p.inferencesPerSec).padStart(8)} inf/s  p50 ${fmt(p.p50)} ms  p99 ${fmt(p.p99)} ms`);
      for (const p of result.byBatch) lines.push(`  batch ${String(p.x).padStart(3)}    ${fmt(p.inferencesPerSec).padStart(8)} inf/s  p50 ${fmt(p.p50)} ms  p99 ${fmt(p.p99)} ms`);
      if (result.batchSkipped) lines.push(`  batch sweep skipped: ${result.batchSkipped}`);
      for (const r of result.analysis.recommendations) lines.push(`  - ${r.message}`);
      if (opts.report) lines.push(`report: ${opts.report}`);
      console.log(lines.join('\n'));
    });
}
