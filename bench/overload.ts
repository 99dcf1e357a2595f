/**
 * `npm run bench:overload`: a source at N x (default 3x) the sustainable rate for a fixed time
 * through what an ncs2-infer node runs (InferController with its own backpressure, on a graph
 * with dynamic batching, in a fresh engine), without Node-RED's message routing. It samples RSS
 * and heap once a second and accounts for every message sent: answered + dropped (counted) +
 * rejected (with an error) + failed must equal sent, with nothing left held at the end.
 *
 * The sustainable rate is measured first in the same process: a closed loop that keeps the node's
 * in-flight limit full, results per second over the calibration window.
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Command, InvalidArgumentError } from 'commander';
import { buildMlp, buildMobileNetLike, InferenceEngine, LatencyHistogram } from '../src/engine';
import type { QueuePolicy, LatencySummary } from '../src/engine';
import { DeviceLease } from '../nodes/lib/device-lease';
import { GraphLease } from '../nodes/lib/graph-lease';
import { InferController } from '../nodes/lib/infer-controller';
import type { InferMessageCounts } from '../nodes/lib/infer-counters';
import { parseGraphSettings } from '../nodes/lib/settings';
import { parsePoolSettings } from '../nodes/lib/pool';
import type { NodeMessage } from '../nodes/lib/red';

export type OverloadModel = 'mlp' | 'cnn';

export interface OverloadOptions {
  model: OverloadModel;
  /** CNN input side (pixels); smaller is faster. */
  cnnSize?: number;
  durationS: number;
  /** Offered rate as a multiple of the measured sustainable rate. */
  overload: number;
  calibrateS: number;
  policy: QueuePolicy;
  maxInFlight: number;
  maxWaiting: number;
  /** Memory samples before this many seconds are left out of the slope (warm-up: pools, JIT). */
  warmupS: number;
  sampleMs?: number;
  log?(line: string): void;
}

export interface MemorySample {
  t: number;
  rssMb: number;
  heapMb: number;
  /** ArrayBuffer memory (message tensors, pooled buffers), outside the JS heap. */
  arrayBuffersMb: number;
  held: number;
}

export interface OverloadResult {
  model: string;
  options: Omit<OverloadOptions, 'log'>;
  sustainablePerSec: number;
  targetPerSec: number;
  offeredPerSec: number;
  sent: number;
  answered: number;
  dropped: number;
  rejected: number;
  failed: number;
  /** sent - (answered + dropped + rejected + failed) once the run drained: must be 0. */
  unaccounted: number;
  /** What the node itself counted (must agree with the callbacks). */
  nodeCounts: InferMessageCounts;
  /** Most messages the node held at once (sampled), against its limit in flight + waiting. */
  maxHeld: number;
  heldLimit: number;
  answeredPerSec: number;
  latencyMs: LatencySummary;
  errors: string[];
  memory: MemorySample[];
  /** Least-squares slopes over the samples after warm-up (MB per minute). */
  rssSlopeMbPerMin: number;
  heapSlopeMbPerMin: number;
  arrayBuffersSlopeMbPerMin: number;
  /** RSS slope over the second half of the run only: ~0 once native arenas reached their size. */
  rssSlopeLastHalfMbPerMin: number;
}

const WORDS = { loading: 'loading', ready: 'ready', failed: 'failed', dropped: 'dropped' };
const silentLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

function modelFor(opts: OverloadOptions): { bytes: Uint8Array; name: string; dims: number[] } {
  if (opts.model === 'mlp') return { bytes: buildMlp({ inputSize: 784, hidden: [128], outputSize: 10 }), name: 'MLP 784-128-10', dims: [1, 784] };
  const size = opts.cnnSize ?? 224;
  return { bytes: buildMobileNetLike({ inputSize: size }), name: `MobileNetV2-like CNN ${size}x${size}`, dims: [1, 3, size, size] };
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

export async function runOverload(opts: OverloadOptions): Promise<OverloadResult> {
  const log = opts.log ?? (() => undefined);
  const model = modelFor(opts);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-overload-'));
  const modelPath = path.join(dir, 'model.onnx');
  await fs.writeFile(modelPath, model.bytes);
  const engine = new InferenceEngine();
  const device = new DeviceLease(() => engine, 'overload', parsePoolSettings({ kind: 'cpu' }), 'cpu');
  const lease = new GraphLease(() => engine, device, parseGraphSettings({ model: modelPath, preset: 'raw', rawFormat: 'typed', batching: true }, undefined), model.name, silentLog);
  const controller = new InferController({
    graph: lease,
    status: () => undefined,
    warn: () => undefined,
    words: WORDS,
    backpressure: { policy: opts.policy, maxInFlight: opts.maxInFlight, maxWaiting: opts.maxWaiting },
  });
  const size = model.dims.reduce((a, b) => a * b, 1);
  const message = (): NodeMessage => ({ payload: { data: new Float32Array(size).fill(0.5), dims: model.dims } });
  const errors = new Map<string, number>();
  try {
    controller.start();
    await lease.whenLoaded();

    // Sustainable rate: keep the node's in-flight limit full for calibrateS.
    let calibrated = 0;
    let stopCalibration = false;
    const calibrationStart = performance.now();
    await new Promise<void>((resolve) => {
      let outstanding = 0;
      const feed = () => {
        while (!stopCalibration && outstanding < opts.maxInFlight) {
          outstanding++;
          controller.onInput(message(), () => calibrated++, () => {
            outstanding--;
            if (stopCalibration && outstanding === 0) resolve();
            else setImmediate(feed);
          });
        }
      };
      feed();
      setTimeout(() => (stopCalibration = true), opts.calibrateS * 1000);
    });
    const sustainablePerSec = (calibrated * 1000) / (performance.now() - calibrationStart);
    const targetPerSec = sustainablePerSec * opts.overload;
    log(`${model.name}: sustainable ${sustainablePerSec.toFixed(0)} msg/s (closed loop, ${opts.maxInFlight} in flight); offering ${targetPerSec.toFixed(0)} msg/s for ${opts.durationS} s, policy ${opts.policy}`);

    const base = controller.messageCounts();
    const latency = new LatencyHistogram();
    let sent = 0;
    let answered = 0;
    let dropped = 0;
    let rejected = 0;
    let failed = 0;
    let sentResults = 0;
    const memory: MemorySample[] = [];
    let maxHeld = 0;
    const start = performance.now();
    const end = start + opts.durationS * 1000;
    const sample = () => {
      const m = process.memoryUsage();
      const held = controller.messageCounts().held;
      maxHeld = Math.max(maxHeld, held);
      memory.push({ t: (performance.now() - start) / 1000, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, arrayBuffersMb: m.arrayBuffers / 2 ** 20, held });
    };
    sample();
    const sampler = setInterval(sample, opts.sampleMs ?? 1000);
    let nextProgress = start + 10_000;
    while (performance.now() < end) {
      // Open loop: whatever is due by now goes out, whether or not earlier messages ended.
      const due = Math.floor(((performance.now() - start) / 1000) * targetPerSec) - sent;
      for (let i = 0; i < due; i++) {
        const sentAt = performance.now();
        sent++;
        let replied = false;
        controller.onInput(
          message(),
          () => {
            replied = true;
            sentResults++;
            latency.record(performance.now() - sentAt);
          },
          (err) => {
            if (err) {
              if (err.message.startsWith('rejected:')) rejected++;
              else {
                failed++;
                errors.set(err.message, (errors.get(err.message) ?? 0) + 1);
              }
            } else if (replied) answered++;
            else dropped++;
          },
        );
      }
      if (performance.now() >= nextProgress) {
        log(`  ${((performance.now() - start) / 1000).toFixed(0)} s: sent ${sent}, answered ${answered}, dropped ${dropped}, rejected ${rejected}, held ${controller.messageCounts().held}, rss ${memory.at(-1)?.rssMb.toFixed(0)} MB`);
        nextProgress += 10_000;
      }
      await tick();
    }
    const offeredPerSec = (sent * 1000) / (performance.now() - start);
    // Drain: every message must end; bounded wait so a lost message shows as unaccounted, not a hang.
    const drainEnd = performance.now() + 30_000;
    while (answered + dropped + rejected + failed < sent && performance.now() < drainEnd) await tick();
    clearInterval(sampler);
    sample();
    const elapsed = (performance.now() - start) / 1000;
    const after = memory.filter((m) => m.t >= opts.warmupS);
    const lastHalf = memory.filter((m) => m.t >= opts.durationS / 2 && m.t <= opts.durationS);
    const fit = (samples: MemorySample[], k: 'rssMb' | 'heapMb' | 'arrayBuffersMb') => slope(samples.map((m) => m.t), samples.map((m) => m[k])) * 60;
    const counts = controller.messageCounts();
    const nodeCounts: InferMessageCounts = {
      received: counts.received - base.received,
      answered: counts.answered - base.answered,
      failed: counts.failed - base.failed,
      dropped: counts.dropped - base.dropped,
      rejected: counts.rejected - base.rejected,
      held: counts.held,
    };
    if (sentResults !== answered) errors.set(`${sentResults} results were sent for ${answered} answered messages`, 1);
    const { log: _log, ...options } = opts;
    return {
      model: model.name,
      options,
      sustainablePerSec,
      targetPerSec,
      offeredPerSec,
      sent,
      answered,
      dropped,
      rejected,
      failed,
      unaccounted: sent - (answered + dropped + rejected + failed),
      nodeCounts,
      maxHeld,
      heldLimit: opts.maxInFlight + opts.maxWaiting,
      answeredPerSec: answered / elapsed,
      latencyMs: latency.summary(),
      errors: [...errors].map(([m, n]) => `${n} x ${m}`),
      memory,
      rssSlopeMbPerMin: fit(after, 'rssMb'),
      heapSlopeMbPerMin: fit(after, 'heapMb'),
      arrayBuffersSlopeMbPerMin: fit(after, 'arrayBuffersMb'),
      rssSlopeLastHalfMbPerMin: fit(lastHalf, 'rssMb'),
    };
  } finally {
    await controller.close(true);
    await engine.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function summary(r: OverloadResult): string {
  const mem = (k: 'rssMb' | 'heapMb' | 'arrayBuffersMb') => `${r.memory[0][k].toFixed(0)} -> ${r.memory.at(-1)![k].toFixed(0)} MB (max ${Math.max(...r.memory.map((m) => m[k])).toFixed(0)})`;
  return [
    `model            ${r.model}, policy ${r.options.policy}, limit ${r.options.maxInFlight} in flight + ${r.options.maxWaiting} waiting`,
    `sustainable      ${r.sustainablePerSec.toFixed(0)} msg/s (closed loop)`,
    `offered          ${r.offeredPerSec.toFixed(0)} msg/s for ${r.options.durationS} s (${(r.offeredPerSec / r.sustainablePerSec).toFixed(2)}x; target ${r.options.overload}x)`,
    `sent             ${r.sent}`,
    `offered/answered ${(r.offeredPerSec / r.answeredPerSec).toFixed(2)}x (offered rate over the rate answered during the run itself)`,
    `answered         ${r.answered} (${r.answeredPerSec.toFixed(0)}/s, latency p50 ${r.latencyMs.p50.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms)`,
    `dropped          ${r.dropped} (counted by the node: ${r.nodeCounts.dropped})`,
    `rejected         ${r.rejected} (with an error; counted by the node: ${r.nodeCounts.rejected})`,
    `failed           ${r.failed}${r.errors.length ? ': ' + r.errors.join('; ') : ''}`,
    `unaccounted      ${r.unaccounted} (sent - answered - dropped - rejected - failed), held at the end ${r.nodeCounts.held}`,
    `held             max ${r.maxHeld} sampled, limit ${r.heldLimit}`,
    `rss              ${mem('rssMb')}, slope after ${r.options.warmupS} s: ${r.rssSlopeMbPerMin.toFixed(2)} MB/min, over the second half: ${r.rssSlopeLastHalfMbPerMin.toFixed(2)} MB/min`,
    `heap used        ${mem('heapMb')}, slope after ${r.options.warmupS} s: ${r.heapSlopeMbPerMin.toFixed(2)} MB/min`,
    `array buffers    ${mem('arrayBuffersMb')}, slope after ${r.options.warmupS} s: ${r.arrayBuffersSlopeMbPerMin.toFixed(2)} MB/min`,
  ].join('\n');
}

async function main(): Promise<void> {
  const positive = (name: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be > 0, got '${v}'.`);
    return n;
  };
  const count = (name: string, min: number) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${v}'.`);
    return n;
  };
  const program = new Command()
    .name('overload')
    .description('a source at N x the sustainable rate through an ncs2-infer node controller: memory and message accounting')
    .option('--duration <s>', 'seconds of overload', positive('--duration'), 60)
    .option('--overload <x>', 'offered rate as a multiple of the sustainable rate', positive('--overload'), 3)
    .option('--calibrate <s>', 'seconds measuring the sustainable rate', positive('--calibrate'), 5)
    .option('--model <name>', 'mlp (784-128-10) or cnn (MobileNetV2-like)', 'cnn')
    .option('--cnn-size <px>', 'CNN input side', count('--cnn-size', 32), 224)
    .option('--policy <p>', 'reject, drop-oldest or drop-newest', 'drop-oldest')
    .option('--in-flight <n>', 'node limit in flight', count('--in-flight', 1), 16)
    .option('--waiting <n>', 'node limit waiting (small: a queue longer than a few batches only adds latency)', count('--waiting', 0), 16)
    .option('--warmup <s>', 'seconds left out of the memory slope', count('--warmup', 0), 10)
    .option('--out <file>', 'results file', path.join(__dirname, '..', '..', 'bench', 'results', 'overload.json'))
    .parse(process.argv);
  const o = program.opts<{ duration: number; overload: number; calibrate: number; model: string; cnnSize: number; policy: string; inFlight: number; waiting: number; warmup: number; out: string }>();
  if (o.model !== 'mlp' && o.model !== 'cnn') throw new Error(`--model must be mlp or cnn, got '${o.model}'`);
  if (!['reject', 'drop-oldest', 'drop-newest'].includes(o.policy)) throw new Error(`--policy must be reject, drop-oldest or drop-newest, got '${o.policy}'`);
  const r = await runOverload({
    model: o.model,
    cnnSize: o.cnnSize,
    durationS: o.duration,
    overload: o.overload,
    calibrateS: o.calibrate,
    policy: o.policy as QueuePolicy,
    maxInFlight: o.inFlight,
    maxWaiting: o.waiting,
    warmupS: Math.min(o.warmup, o.duration / 2),
    log: (s) => console.error(s),
  });
  await fs.mkdir(path.dirname(o.out), { recursive: true });
  await fs.writeFile(o.out, JSON.stringify({ date: new Date().toISOString(), host: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version, loadAverage: os.loadavg() }, ...r }, null, 2) + '\n');
  console.log(summary(r));
  console.log(`results: ${path.relative(process.cwd(), o.out)}`);
  if (r.unaccounted !== 0 || r.nodeCounts.held !== 0 || r.maxHeld > r.heldLimit) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(`overload: error: ${err.message}`);
    process.exitCode = 1;
  });
}
