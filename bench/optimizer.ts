/**
 * Optimizer benchmark: what FP16 and INT8 do to throughput and accuracy on this host.
 *
 *   node dist/bench/optimizer.js [--rounds 15] [--seconds 0.6] [--reference python-int8.onnx]
 *
 * Throughput: the MobileNetV2-like CNN (buildMobileNetLike, 224x224, batch 1) in fp32, fp16
 * and int8, each in two configurations: one session with 2 intra-op threads on the main
 * thread, and 2 worker threads with a 1-thread session each (onnxruntime-node's run() keeps
 * its calling thread busy, so parallel sessions need threads). Every model is loaded once in
 * both forms, then measured in short bursts, all models in rotating order within each round,
 * so load from other processes on this shared host spreads over all of them. Each reports the
 * median of its rounds; the int8/fp32 ratio is taken from the best configuration of each, and
 * per configuration also as the median of same-round ratios. `--reference` adds a model quantized elsewhere
 * (e.g. by onnxruntime's Python quantizer) to the same table.
 *
 * Accuracy: the real MNIST model on the 2,000 held-out digits in fp32, fp16 and int8 (each
 * calibration method), calibrated on 200 training digits.
 *
 * Prints a table and writes bench/results/optimizer.json.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import * as ort from 'onnxruntime-node';
import { buildMobileNetLike, optimizeModel } from '../src/engine';
import type { CalibrationMethod } from '../src/engine';
import { loadMnist, mnistAccuracy, relativeError, syntheticImages, withFloat16Boundaries, MNIST_MODEL, ROOT } from '../test/optimizer/helpers';

const INPUT = [1, 3, 224, 224];

interface WorkerJob {
  model: Uint8Array;
}

/** Worker side: one 1-thread session; each message is a burst length in seconds, the reply its run count. */
async function workerMain(job: WorkerJob): Promise<void> {
  const session = await ort.InferenceSession.create(job.model, { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  const x = new ort.Tensor('float32', syntheticImages(1, 3, 224)[0], INPUT);
  for (let i = 0; i < 5; i++) await session.run({ input: x });
  parentPort?.on('message', async (seconds: number) => {
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      await session.run({ input: x });
      n++;
    }
    parentPort?.postMessage(n);
  });
  parentPort?.postMessage('ready');
}

/** One model loaded both ways: a 2-thread session here and two 1-thread sessions in workers. */
class Contender {
  private constructor(
    readonly name: string,
    readonly bytes: Uint8Array,
    private readonly session: ort.InferenceSession,
    private readonly workers: Worker[],
  ) {}

  static async load(name: string, bytes: Uint8Array): Promise<Contender> {
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, logSeverityLevel: 3 });
    const workers = [0, 1].map(() => new Worker(__filename, { workerData: { model: bytes } satisfies WorkerJob }));
    await Promise.all(workers.map((w) => reply(w)));
    const c = new Contender(name, bytes, session, workers);
    await c.oneSession(0.3);
    return c;
  }

  async oneSession(seconds: number): Promise<number> {
    const x = new ort.Tensor('float32', syntheticImages(1, 3, 224)[0], INPUT);
    const start = performance.now();
    let n = 0;
    while (performance.now() - start < seconds * 1000) {
      await this.session.run({ input: x });
      n++;
    }
    return n / ((performance.now() - start) / 1000);
  }

  async twoWorkers(seconds: number): Promise<number> {
    const start = performance.now();
    const counts = this.workers.map((w) => reply<number>(w));
    for (const w of this.workers) w.postMessage(seconds);
    const total = (await Promise.all(counts)).reduce((a, b) => a + b, 0);
    return total / ((performance.now() - start) / 1000);
  }

  async close(): Promise<void> {
    await this.session.release();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

function reply<T = unknown>(w: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    w.once('error', onError);
    w.once('message', (m: T) => {
      w.off('error', onError);
      resolve(m);
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

async function main(): Promise<void> {
  const rounds = Number(arg('rounds', '15'));
  const seconds = Number(arg('seconds', '0.6'));
  const reference = arg('reference', '');

  // --- Models
  const fp32 = buildMobileNetLike({ inputSize: 224 });
  const calibration = syntheticImages(32, 3, 224);
  const int8 = await optimizeModel(fp32, { precision: 'int8', calibration });
  const fp16 = await optimizeModel(fp32, { precision: 'fp16' });
  const models: Array<{ name: string; bytes: Uint8Array }> = [
    { name: 'fp32', bytes: fp32 },
    { name: 'fp16', bytes: fp16.bytes },
    { name: 'int8', bytes: int8.bytes },
  ];
  if (reference) models.push({ name: `reference (${path.basename(reference)})`, bytes: new Uint8Array(fs.readFileSync(reference)) });

  // Output agreement on one image (fp16 also with every intermediate rounded, as on a float16 device).
  const probe = new ort.Tensor('float32', syntheticImages(1, 3, 224, 9)[0], INPUT);
  const run = async (bytes: Uint8Array, level: 'all' | 'disabled' = 'all'): Promise<Float32Array> => {
    const s = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3, graphOptimizationLevel: level });
    const out = (await s.run({ input: probe })).logits.data as Float32Array;
    await s.release();
    return out;
  };
  const ref = await run(fp32);
  const mobilenetError = {
    fp16: relativeError(ref, await run(withFloat16Boundaries(fp16.bytes), 'disabled')),
    int8: relativeError(ref, await run(int8.bytes)),
  };

  // --- Throughput: short bursts, models in rotating order within each round, so slow changes
  //     in the load other processes put on this shared host hit every model alike.
  const contenders: Contender[] = [];
  for (const m of models) contenders.push(await Contender.load(m.name, m.bytes));
  const configs = ['1 session x 2 threads', '2 workers x 1 thread'] as const;
  const samples = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const c of configs) {
      for (let k = 0; k < contenders.length; k++) {
        const m = contenders[(k + r) % contenders.length];
        const rate = c === configs[0] ? await m.oneSession(seconds) : await m.twoWorkers(seconds);
        const key = `${m.name}|${c}`;
        samples.set(key, [...(samples.get(key) ?? []), rate]);
      }
    }
  }
  for (const c of contenders) await c.close();
  const roundsOf = (model: string, c: string): number[] => samples.get(`${model}|${c}`) ?? [];
  const throughput = models.map((m) => {
    const per = Object.fromEntries(
      configs.map((c) => {
        const own = roundsOf(m.name, c);
        const base = roundsOf('fp32', c);
        // Same-round ratios: both measured seconds apart, under nearly the same load.
        return [c, { median: median(own), vsFp32SameRound: median(own.map((v, i) => v / base[i])), rounds: own }];
      }),
    );
    const best = Math.max(...configs.map((c) => per[c].median));
    return { model: m.name, sizeBytes: m.bytes.length, configs: per, best };
  });
  const bestOf = (name: string): number => throughput.find((t) => t.model === name)?.best ?? NaN;
  const ratios = Object.fromEntries(models.filter((m) => m.name !== 'fp32').map((m) => [m.name, bestOf(m.name) / bestOf('fp32')]));

  // --- MNIST accuracy
  const mnist = new Uint8Array(fs.readFileSync(MNIST_MODEL));
  const base = await mnistAccuracy(mnist);
  const mnistFp16 = await optimizeModel(mnist, { precision: 'fp16' });
  const f16 = await mnistAccuracy(withFloat16Boundaries(mnistFp16.bytes), 'disabled');
  const accuracy: Record<string, { top1: number; relativeError: number }> = {
    fp32: { top1: base.accuracy, relativeError: 0 },
    fp16: { top1: f16.accuracy, relativeError: relativeError(base.logits, f16.logits) },
  };
  for (const method of ['minmax', 'percentile', 'entropy'] as CalibrationMethod[]) {
    const q = await optimizeModel(mnist, { precision: 'int8', calibration: loadMnist().calibration, method });
    const a = await mnistAccuracy(q.bytes);
    accuracy[`int8 ${method}`] = { top1: a.accuracy, relativeError: relativeError(base.logits, a.logits) };
  }

  // --- Report
  const pad = (s: string, n: number): string => s.padEnd(n);
  console.log(`\nMobileNetV2-like CNN 224x224, batch 1, inferences/s (median of ${rounds} interleaved rounds of ${seconds} s)`);
  console.log(`${pad('model', 28)}${configs.map((c) => pad(c, 34)).join('')}best    vs fp32  size`);
  for (const t of throughput) {
    const ratio = t.model === 'fp32' ? '1.00x' : `${ratios[t.model].toFixed(2)}x`;
    const cell = (c: (typeof configs)[number]): string => pad(`${t.configs[c].median.toFixed(0)} (same-round ${t.configs[c].vsFp32SameRound.toFixed(2)}x)`, 34);
    console.log(`${pad(t.model, 28)}${configs.map(cell).join('')}${pad(t.best.toFixed(0), 8)}${pad(ratio, 9)}${(t.sizeBytes / 1e6).toFixed(1)} MB`);
  }
  console.log(`output error vs fp32 (max |diff| / max |fp32|): fp16 ${mobilenetError.fp16.toExponential(2)}, int8 ${mobilenetError.int8.toFixed(3)} (random weights, synthetic input)`);
  console.log(`\nMNIST (2,000 held-out digits; int8 calibrated on 200 training digits)`);
  for (const [k, v] of Object.entries(accuracy)) console.log(`${pad(k, 20)}top-1 ${(v.top1 * 100).toFixed(2)} %   logits error ${v.relativeError.toExponential(2)}`);

  const result = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, onnxruntime: ort.env.versions.common, load: os.loadavg() },
    settings: { rounds, seconds, input: INPUT, calibrationSamples: calibration.length, reference: reference || null },
    mobilenet: { throughput, int8VsFp32: ratios.int8, fp16VsFp32: ratios.fp16, ratios, outputError: mobilenetError, int8Runtime: int8.report.runtime },
    mnist: accuracy,
  };
  const out = path.join(ROOT, 'bench', 'results', 'optimizer.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), out)}`);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  void workerMain(workerData as WorkerJob);
}
