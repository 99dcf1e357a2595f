#!/usr/bin/env node
/**
 * The `ncs2` command: list the devices the engine can use here and benchmark a model on them.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { resolveModel, BUILTIN_MODELS } from './models';
import { runBench, type BenchResult } from './bench';
import { formatImageBench, runImageBench } from './image-bench';
import { listDevices, type DevicesReport } from './devices';
import { int, ms, pct, plural, tops, ProgressLine } from './format';
import type { Progress } from './load';
import { registerAnalyze, benchReportHtml, writeReport } from './analyze';
import { registerOptimize } from './optimize';
import { serveCommand } from './serve';
import { runSimBench, planModel, type SimBenchResult } from './sticks';
import { listSticks } from '../engine';
import type { StickListing, ModelPlan } from '../engine';

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'.`);
    return n;
  };
}

function positiveNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number of seconds > 0, got '${value}'.`);
    return n;
  };
}

function positiveMs(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number of milliseconds > 0, got '${value}'.`);
    return n;
  };
}

function nonNegativeNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number of seconds >= 0, got '${value}'.`);
    return n;
  };
}

function intOrAuto(name: string) {
  const parse = positiveInt(name);
  return (value: string): number | 'auto' => (value === 'auto' ? 'auto' : parse(value));
}

/** --shape name=d0,d1,... (repeatable) for inputs with symbolic dims other than the batch. */
function shapeOption(value: string, previous: Record<string, number[]> = {}): Record<string, number[]> {
  const m = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected <input>=<d0>,<d1>,... (for example input=1,3,224,224), got '${value}'.`);
  const dims = m[2].split(',').map(Number);
  if (dims.some((d) => d < 1)) throw new InvalidArgumentError(`dims must be positive, got '${m[2]}'.`);
  return { ...previous, [m[1]]: dims };
}

function printDevices(report: DevicesReport): void {
  for (const d of report.devices) {
    const lines = [
      `${d.id}  ${d.name}`,
      `  cpu model        ${d.cpuModel}`,
      `  cores            ${d.cores}`,
      `  default split    ${plural(d.defaultSplit.workers, 'worker')} x ${plural(d.defaultSplit.threadsPerWorker, 'thread')}`,
      `  temperature      ${d.temperatureC === null ? 'not exposed by this host' : `${d.temperatureC.toFixed(1)} C`}`,
    ];
    if (d.peak) {
      const f = (v: number | null) => (v === null ? 'not measured' : tops(v));
      lines.push(`  measured peak    fp32 ${f(d.peak.fp32)}, int8 ${f(d.peak.int8)} (${d.peak.measuredAt})`);
    } else {
      lines.push(`  measured peak    not measured on this host yet (ncs2 devices --calibrate, or any ncs2 bench)`);
    }
    for (const o of d.otherSplits) {
      lines.push(`  peak at ${o.split.padEnd(8)} fp32 ${o.fp32 === null ? '-' : tops(o.fp32)}, int8 ${o.int8 === null ? '-' : tops(o.int8)}`);
    }
    console.log(lines.join('\n'));
  }
  console.log(`\npeak cache: ${report.peakCache} (onnxruntime-node ${report.onnxruntime})`);
}

function printSticks(listing: StickListing): void {
  const s = listing.status;
  console.log(`\nNCS2 sticks (USB): ${s.state}${'reason' in s && s.reason ? ` (${s.reason})` : ''}`);
  for (const st of listing.sticks) console.log(`  ${st.path.padEnd(10)} ${st.state}${st.simulated ? ' (simulated)' : ''}`);
  if (listing.status.state !== 'no USB access' && listing.sticks.length === 0) console.log('  none found');
}

function printSimBench(r: SimBenchResult): void {
  console.log(
    [
      `${r.model.name} on ${plural(r.sticks, 'simulated NCS2 stick')} (USB ${r.usb}, ${r.requestsInFlight} in flight) [simulated]`,
      `  throughput   ${r.throughput.toFixed(1)} inferences/s`,
      `  latency      p50 ${ms(r.latencyMs.p50)} ms  p95 ${ms(r.latencyMs.p95)} ms  p99 ${ms(r.latencyMs.p99)} ms  max ${ms(r.latencyMs.max)} ms`,
      `  achieved     ${tops(r.tops * 1e12)} = ${pct(r.utilization)} of ${r.sticks} x 1 TOPS (published stick peak)`,
      `  verdict      ${r.verdict.message}`,
    ].join('\n'),
  );
}

function printPlan(p: ModelPlan): void {
  const plan = p.plan;
  console.log(
    [
      `plan for ${plural(plan.sticks, 'NCS2 stick')} on USB ${plan.usb} (${plan.requestsInFlight} requests in flight) [simulated, virtual time]`,
      `  throughput   ${plan.throughputFps.toFixed(1)} inferences/s (${plan.perStickFps.toFixed(1)} per stick), limited by ${plan.bottleneck}`,
      `  latency      p50 ${ms(plan.latencyMs.p50)} ms  p99 ${ms(plan.latencyMs.p99)} ms`,
      `  sustained    ${plan.sustained.throughputFps.toFixed(1)}/s at ${plan.sustained.temperatureC.toFixed(0)} C (throttle: ${plan.sustained.throttle}; assumed thermal limits)`,
      `  one more     ${p.withOneMoreStick.throughputFps.toFixed(1)}/s with ${p.withOneMoreStick.sticks} sticks (${p.oneMoreStickGain >= 0 ? '+' : ''}${pct(p.oneMoreStickGain)})`,
      `  ${p.summary}`,
      ...p.warnings.map((w) => `  warning: ${w}`),
    ].join('\n'),
  );
}

function batchLine(r: BenchResult): string {
  const b = r.batching;
  if (r.config.batch !== 'auto' || !b) return String(r.config.batch);
  if (!b.enabled) return `auto: off (${b.reason ?? 'not batchable'}); every task ran alone`;
  return `auto: dynamic batching, ${b.runs.toLocaleString('en-US')} runs of ${b.avgBatchSize.toFixed(1)} samples on average; cap now ${b.cap} of ${b.maxBatchSize}, wait ${ms(b.delayMs ?? 0)} ms, target p99 ${ms(b.targetLatencyMs ?? 0)} ms`;
}

function printBench(r: BenchResult): void {
  const c = r.config;
  const lines: string[] = [];
  lines.push(`${r.model.name}: ${r.model.description}`);
  if (r.splits.length) {
    lines.push('', 'worker x thread splits tried (--workers auto):');
    for (const s of r.splits) {
      lines.push(`  ${`${s.workers} x ${s.threads}`.padEnd(7)} ${int(s.throughput).padStart(10)} inf/s   p50 ${ms(s.latencyP50Ms)} ms   ${s.parallel} in flight${s.chosen ? '   <- chosen' : ''}`);
    }
  }
  const device = `${c.devices > 1 ? `${c.devices} cpu devices x ` : 'cpu: '}${plural(c.workers, 'worker')} x ${plural(c.threads, 'thread')}`;
  const util = r.utilization === null ? `n/a: ${r.utilizationReason}` : `${pct(r.utilization)} of the measured ${r.peak!.precision} peak (${tops(r.peak!.opsPerSec)}, ${r.peak!.source === 'measured' ? 'measured now' : r.peak!.source === 'cache' ? 'cached' : 'reported by the device'})`;
  const rows: Array<[string, string]> = [
    ['device', device],
    ['tasks in flight', `${c.parallel} (${c.parallelMode})`],
    ['batch', batchLine(r)],
    ['throughput', `${int(r.throughput)} inferences/s (${r.completed.toLocaleString('en-US')} tasks in ${c.durationS} s)`],
    ['latency', `p50 ${ms(r.latencyMs.p50)}  p95 ${ms(r.latencyMs.p95)}  p99 ${ms(r.latencyMs.p99)}  max ${ms(r.latencyMs.max)} ms`],
    ['ops/inference', `${int(r.opsPerInference)}${r.model.opsCountComplete ? '' : ` (lower bound: no cost rule for ${r.model.unknownOps.join(', ')})`}`],
    ['achieved', tops(r.tops * 1e12)],
    ['utilization', util],
    ['event-loop delay', `p50 ${ms(r.eventLoopDelayMs.p50)}  p99 ${ms(r.eventLoopDelayMs.p99)}  max ${ms(r.eventLoopDelayMs.max)} ms (main thread ${pct(r.eventLoopDelayMs.utilization)} busy)`],
    ['simulated', 'no (real inference on this host)'],
  ];
  if (r.failed) rows.push(['failed tasks', `${r.failed}: ${r.errors.join('; ')}`]);
  lines.push('', ...rows.map(([k, v]) => `  ${k.padEnd(17)} ${v}`));
  console.log(lines.join('\n'));
}

function progressPrinter(): { line: ProgressLine; onProgress(label: string, p: Progress): void } {
  const line = new ProgressLine();
  return {
    line,
    onProgress: (label, p) => {
      const rate = p.elapsedMs > 0 ? (p.completed * 1000) / p.elapsedMs : 0;
      const phase = p.phase === 'warm-up' ? 'warming up' : `${int(rate)} tasks/s`;
      line.update(`${label}: ${(p.elapsedMs / 1000).toFixed(1)}/${(p.totalMs / 1000).toFixed(1)} s  ${phase}`);
    },
  };
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('ncs2')
    .description('Inference devices and benchmarks of the node-red-ncs2 engine')
    .showHelpAfterError('(add --help for usage)');

  program
    .command('devices')
    .description('list the devices the engine can use on this host')
    .option('--json', 'print one JSON object')
    .option('--calibrate', "measure the default split's peak ops/s now if it is not cached")
    .action(async (opts: { json?: boolean; calibrate?: boolean }) => {
      const report = await listDevices({ calibrate: opts.calibrate });
      const sticks = await listSticks();
      if (opts.json) process.stdout.write(JSON.stringify({ ...report, sticks }, null, 2) + '\n');
      else {
        printDevices(report);
        printSticks(sticks);
      }
    });

  program
    .command('bench')
    .description('measure a model on this host through the engine')
    .argument('<model>', `an .onnx file, or a built-in generated model: ${Object.keys(BUILTIN_MODELS).map((k) => `${k} (${BUILTIN_MODELS[k].description})`).join('; ')}`)
    .addOption(new Option('--device <kind>', 'device kind (sim-ncs2: simulated sticks, paced to the calibrated Myriad X model)').choices(['cpu', 'sim-ncs2']).default('cpu'))
    .option('--devices <n>', 'CPU devices to split the cores into, or simulated sticks', positiveInt('--devices'), 1)
    .addOption(new Option('--usb <gen>', 'USB generation of simulated sticks').choices(['2', '3']).default('3'))
    .option('--report <file>', 'also write an HTML report with SVG charts')
    .option('--workers <w>', "worker threads per device, or 'auto' to measure every split that does not oversubscribe the cores and keep the best", intOrAuto('--workers'), 'auto')
    .option('--threads <t>', 'onnxruntime intra-op threads per worker (default: the cores left per worker)', positiveInt('--threads'))
    .option('--parallel <m>', "tasks kept in flight, or 'auto' (sized from the measured run time)", intOrAuto('--parallel'), 'auto')
    .option('--duration <s>', 'measured seconds', positiveNumber('--duration'), 10)
    .option('--warmup <s>', 'warm-up seconds before measuring', nonNegativeNumber('--warmup'), 1)
    .option('--batch <n>', "samples per task (the first input dim), or 'auto': single-sample tasks that the engine's adaptive dynamic batching coalesces", intOrAuto('--batch'), 1)
    .option('--target-latency <ms>', "with --batch auto: the p99 latency (ms) the batching controller keeps (default 2)", positiveMs('--target-latency'))
    .option('--max-batch <n>', 'with --batch auto: the largest batch (default 32)', positiveInt('--max-batch'))
    .option('--images <source>', "run the whole JPEG-to-result pipeline on a folder of images, or 'generated' (1920x1080 JPEGs made here), against the CPU-work bound and a sequential loop")
    .option('--image-count <n>', 'with --images generated: how many frames to make', positiveInt('--image-count'), 16)
    .option('--preprocess-slots <n>', "with --images: decodes at once, or 'auto' (derived from cores and libuv's threadpool)", intOrAuto('--preprocess-slots'), 'auto')
    .option('--shape <input=dims>', 'dims of an input with symbolic dims (repeatable)', shapeOption)
    .option('--no-calibrate', 'do not measure the peak when it is not cached (utilization is then null)')
    .option('--json', 'print one JSON object')
    .action(async (modelSpec: string, opts: { device: 'cpu' | 'sim-ncs2'; usb: '2' | '3'; report?: string; devices: number; workers: number | 'auto'; threads?: number; parallel: number | 'auto'; duration: number; warmup: number; batch: number | 'auto'; targetLatency?: number; maxBatch?: number; shape?: Record<string, number[]>; calibrate: boolean; json?: boolean }) => {
      const model = await resolveModel(modelSpec);
      const pipeline = opts as typeof opts & { images?: string; imageCount: number; preprocessSlots: number | 'auto' };
      if (pipeline.images) {
        const progress = new ProgressLine();
        try {
          const r = await runImageBench(model, { images: pipeline.images, count: pipeline.imageCount, durationS: opts.duration, warmupS: opts.warmup, parallel: opts.parallel, preprocessSlots: pipeline.preprocessSlots, onProgress: (line) => progress.update(line) });
          progress.clear();
          if (opts.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
          else console.log(formatImageBench(r));
        } finally {
          progress.clear();
        }
        return;
      }
      if (opts.batch !== 'auto' && (opts.targetLatency !== undefined || opts.maxBatch !== undefined)) throw new Error('--target-latency and --max-batch apply to --batch auto only');
      if (opts.device === 'sim-ncs2') {
        if (opts.batch === 'auto') throw new Error('--batch auto is for --device cpu; simulated sticks take a fixed --batch N');
        const parallel = opts.parallel === 'auto' ? undefined : opts.parallel;
        const r = await runSimBench(model, { sticks: opts.devices, usb: Number(opts.usb) as 2 | 3, parallel, durationS: opts.duration, warmupS: opts.warmup, batch: opts.batch, shapes: opts.shape ?? {} });
        if (opts.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
        else printSimBench(r);
        return;
      }
      const progress = progressPrinter();
      try {
        const result = await runBench(model, {
          devices: opts.devices,
          workers: opts.workers === 'auto' ? undefined : opts.workers,
          threads: opts.threads,
          parallel: opts.parallel,
          durationS: opts.duration,
          warmupS: opts.warmup,
          batch: opts.batch,
          targetLatencyMs: opts.targetLatency,
          maxBatchSize: opts.maxBatch,
          shapes: opts.shape ?? {},
          calibrate: opts.calibrate,
          onProgress: progress.onProgress,
        });
        progress.line.clear();
        if (opts.report) await writeReport(opts.report, benchReportHtml(result));
        if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        else printBench(result);
      } finally {
        progress.line.clear();
      }
    });
  program
    .command('plan')
    .description('predict throughput and latency of N NCS2 sticks for a model, in virtual time, from the calibrated stick model')
    .argument('<model>', 'an .onnx file, or a built-in generated model (mlp, cnn)')
    .requiredOption('--sticks <n>', 'sticks to plan for', positiveInt('--sticks'))
    .addOption(new Option('--usb <gen>', 'USB generation').choices(['2', '3']).default('3'))
    .option('--parallel <m>', 'requests in flight across all sticks (default 4 per stick)', positiveInt('--parallel'))
    .option('--usb2-buses <n>', 'USB 2 host controllers the sticks are spread over', positiveInt('--usb2-buses'))
    .option('--json', 'print one JSON object')
    .action(async (modelSpec: string, opts: { sticks: number; usb: '2' | '3'; parallel?: number; usb2Buses?: number; json?: boolean }) => {
      const plan = await planModel(await resolveModel(modelSpec), { sticks: opts.sticks, usb: Number(opts.usb) as 2 | 3, parallel: opts.parallel, usb2Buses: opts.usb2Buses });
      if (opts.json) process.stdout.write(JSON.stringify(plan, null, 2) + '\n');
      else printPlan(plan);
    });
  registerOptimize(program);
  registerAnalyze(program);
  // serve parses its own options (node:util parseArgs in serve.ts): everything after 'serve' goes there
  program.command('serve').description('serve a model repository over the Open Inference Protocol (KServe v2 REST); ncs2 serve --help').helpOption(false).allowUnknownOption().allowExcessArguments().argument('[options...]').action((args: string[]) => serveCommand(args));
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    console.error(`ncs2: error: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
