/**
 * `ncs2 bench <model> --images <folder|generated>`: the whole JPEG-to-result path (decode and
 * resize in sharp, inference, postprocessing) through the engine's stages, compared in the same
 * run with
 * - the CPU-work bound: cores x 1 s / (CPU time of decode+resize + CPU time of inference) per
 *   image, both measured here (process.cpuUsage covers sharp's and the workers' threads), and
 * - a plain sequential loop: decode, infer, postprocess, one image at a time (inference on one
 *   worker with every core as intra-op threads, its best configuration for one request at a time).
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import sharp from 'sharp';
import { CpuDevice, InferenceEngine, resolveImageSpec, prepareInput, releaseInput, engineAllocator, runInference, shapeResult, LatencyHistogram } from '../engine';
import type { GraphHandle, StageName, StageStats, ConcurrencyChoice, StageBottleneck, InferenceSetup, LatencySummary } from '../engine';
import { EventLoopProbe, type EventLoopSummary } from './load';
import { hostInfo, type BenchResult } from './bench';
import type { BenchModel } from './models';
import { int, ms, pct, plural, table } from './format';

export interface ImageBenchOptions {
  /** 'generated' or a folder of JPEG/PNG/WebP files. */
  images: string;
  /** Images to generate (generated only). */
  count: number;
  durationS: number;
  warmupS: number;
  /** Requests kept in flight in the pipelined run; 'auto' fills every stage's slots. */
  parallel: number | 'auto';
  /** Preprocess slots; 'auto' keeps the engine's derived choice. */
  preprocessSlots: number | 'auto';
  /** Time for each CPU-work measurement (default: a third of the duration, at least 1 s). */
  measureMs?: number;
  onProgress?(line: string): void;
}

export interface ImageSet {
  source: string;
  count: number;
  width: number;
  height: number;
  meanBytes: number;
}

export interface LoopResult {
  images: number;
  seconds: number;
  imagesPerSec: number;
  latencyMs: LatencySummary;
  eventLoopDelayMs: EventLoopSummary;
  /** Process CPU time (all threads) per image in the window, ms. */
  cpuMsPerImage: number;
}

export interface ImageBenchResult {
  model: { name: string; description: string; precision: string; input: { name: string; type: string; dims: Array<number | string> } };
  images: ImageSet;
  config: { workers: number; threads: number; parallel: number; preprocessSlots: number; sequentialThreads: number; durationS: number; warmupS: number };
  /** CPU time per image, measured in this run. */
  cpuWork: { decodeResizeMs: number; inferMs: number; totalMs: number; cores: number; boundImagesPerSec: number };
  pipelined: LoopResult;
  sequential: LoopResult;
  /**
   * vsCpuBound and vsSequential: the ratios. cpuEfficiency = the measured CPU work per
   * image / the CPU the pipelined run spent per image: how close it came to the bound with the
   * cores it actually got (on a host shared with other processes, vsCpuBound also counts theirs).
   */
  ratios: { vsCpuBound: number; vsSequential: number; cpuEfficiency: number };
  targets: { vsCpuBound: number; vsSequential: number; eventLoopP99Ms: number; met: { vsCpuBound: boolean; vsSequential: boolean; eventLoop: boolean } };
  stages: Record<StageName, StageStats>;
  bottleneck: StageBottleneck | null;
  concurrency: ConcurrencyChoice;
  simulated: false;
  failed: number;
  errors: string[];
  host: BenchResult['host'];
}

const IMAGE_EXT = /\.(jpe?g|png|webp)$/i;

/**
 * A 1920x1080 frame that compresses like a photo (about 1 MB at quality 90): smooth gradients
 * carry the low frequencies, per-pixel noise the high ones a sensor adds, so the JPEG decoder has
 * real entropy to work through.
 */
export async function generateFrame(seed: number, width = 1920, height = 1080): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let s = (seed * 2654435761) >>> 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      const noise = (s >>> 24) % 24;
      raw[i++] = ((x * 255) / width + noise + seed * 13) & 255;
      raw[i++] = ((y * 255) / height + noise) & 255;
      raw[i++] = (((x + y) * 128) / (width + height) + noise * 2) & 255;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

export async function loadImages(source: string, count: number): Promise<{ buffers: Buffer[]; set: ImageSet }> {
  let buffers: Buffer[];
  if (source === 'generated') {
    buffers = [];
    for (let i = 0; i < count; i++) buffers.push(await generateFrame(i + 1));
  } else {
    let names: string[];
    try {
      names = (await fs.readdir(source)).filter((n) => IMAGE_EXT.test(n)).sort();
    } catch (err) {
      throw new Error(`--images ${source}: cannot read the folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); expected a folder of .jpg/.png/.webp files or 'generated'`, { cause: err });
    }
    if (names.length === 0) throw new Error(`--images ${source}: no .jpg, .jpeg, .png or .webp file in the folder; expected images or 'generated'`);
    buffers = await Promise.all(names.map((n) => fs.readFile(path.join(source, n))));
  }
  const meta = await sharp(buffers[0]).metadata();
  return {
    buffers,
    set: { source, count: buffers.length, width: meta.width ?? 0, height: meta.height ?? 0, meanBytes: buffers.reduce((n, b) => n + b.length, 0) / buffers.length },
  };
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

/**
 * Keeps `parallel` requests of `one` outstanding for `durationMs` after `warmupMs`, and measures
 * the window: images/s, latency, event-loop delay, process CPU per image.
 */
async function closedLoop(parallel: number, warmupMs: number, durationMs: number, one: (i: number) => Promise<unknown>, onWarm: () => void, errors: string[]): Promise<LoopResult & { failed: number }> {
  const latency = new LatencyHistogram();
  const probe = new EventLoopProbe();
  let next = 0;
  let counting = false;
  let done = 0;
  let failed = 0;
  const warmEnd = performance.now() + warmupMs;
  const end = warmEnd + durationMs;
  let started = 0;
  let cpu0 = process.cpuUsage();
  const warm = new Promise<void>((resolve) =>
    setTimeout(() => {
      onWarm();
      probe.start();
      started = performance.now();
      cpu0 = process.cpuUsage();
      counting = true;
      resolve();
    }, warmupMs),
  );
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await one(next++);
        if (counting && t0 >= started) {
          done++;
          latency.record(performance.now() - t0);
        }
      } catch (err) {
        failed++;
        const m = (err as Error).message;
        if (errors.length < 5 && !errors.includes(m)) errors.push(m);
        if (failed > 100) return;
      }
    }
  };
  await Promise.all([warm, ...Array.from({ length: parallel }, worker)]);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuMs(cpu0);
  return { images: done, seconds, imagesPerSec: done / seconds, latencyMs: latency.summary(), eventLoopDelayMs: probe.stop(), cpuMsPerImage: done ? cpu / done : 0, failed };
}

/** CPU time per call of `fn`, run back to back for about `forMs` (at least `min` calls). */
async function cpuPerCall(fn: (i: number) => Promise<unknown>, forMs: number, min: number, parallel = 1): Promise<number> {
  const cpu0 = process.cpuUsage();
  const end = performance.now() + forMs;
  let n = 0;
  const loop = async () => {
    while (n < min || performance.now() < end) await fn(n++);
  };
  await Promise.all(Array.from({ length: parallel }, loop));
  return cpuMs(cpu0) / n;
}

export async function runImageBench(model: BenchModel, opts: ImageBenchOptions): Promise<ImageBenchResult> {
  const log = opts.onProgress ?? (() => undefined);
  const cores = os.availableParallelism();
  const input = model.info.inputs[0];
  if (!input) throw new Error(`${model.name} declares no input`);
  log(`loading images (${opts.images})`);
  const { buffers, set } = await loadImages(opts.images, opts.count);
  const errors: string[] = [];

  // Pipelined: one worker per core, one intra-op thread each (requests in parallel, not one split).
  const device = new CpuDevice({ id: 'cpu', workers: cores, threadsPerWorker: 1 });
  const engine = new InferenceEngine({ devices: [device] });
  // Sequential: one request at a time, so every core goes to that request's inference.
  const seqDevice = new CpuDevice({ id: 'cpu-seq', workers: 1, threadsPerWorker: cores });
  const seqEngine = new InferenceEngine({ devices: [seqDevice] });
  try {
    const handle: GraphHandle = await engine.loadGraph(model.bytes, { name: model.name });
    const seqHandle = await seqEngine.loadGraph(model.bytes, { name: model.name });
    const image = resolveImageSpec(handle.info.inputs[0]);
    const setup: InferenceSetup = { handle, image, maxBatch: 1, output: { kind: 'classification', topK: 5 } };
    if (opts.preprocessSlots !== 'auto') engine.setStageConcurrency('preprocess', opts.preprocessSlots, `set to ${opts.preprocessSlots} by --preprocess-slots`);
    const slots = engine.getStats().pipeline.concurrency.preprocess;
    const parallel = opts.parallel === 'auto' ? slots + 2 * device.parallelism + 1 : opts.parallel;
    const warmupMs = opts.warmupS * 1000;
    const durationMs = opts.durationS * 1000;
    const img = (i: number) => buffers[i % buffers.length];

    // 1. CPU work per image, each part alone: decode+resize (sharp, into pooled tensors), then
    //    inference of already prepared tensors with the workers kept busy.
    log('measuring CPU time of decode+resize');
    const allocator = engineAllocator(engine);
    await prepareInput(allocator, handle.info, img(0), { image }).then((p) => releaseInput(allocator, p));
    const measureMs = opts.measureMs ?? Math.max(1000, durationMs / 3);
    const decodeResizeMs = await cpuPerCall(
      async (i) => {
        const p = await prepareInput(allocator, handle.info, img(i), { image });
        releaseInput(allocator, p);
      },
      measureMs,
      Math.min(buffers.length, 8),
    );
    log('measuring CPU time of inference');
    // Plain copies: a pooled tensor moves to its worker on submit and could not be sent again.
    const tensors = await Promise.all(
      buffers.slice(0, 4).map(async (b) => {
        const p = await prepareInput(allocator, handle.info, b, { image });
        const t = p.feeds[input.name];
        const copy = { type: t.type, dims: t.dims, data: t.data.slice() };
        releaseInput(allocator, p);
        return copy;
      }),
    );
    const infer = async (i: number) => {
      await engine.submit(handle, { [input.name]: tensors[i % tensors.length] });
    };
    for (let i = 0; i < 2 * cores; i++) await infer(i);
    const inferMs = await cpuPerCall(infer, measureMs, 16, 2 * device.parallelism);
    const totalMs = decodeResizeMs + inferMs;
    const boundImagesPerSec = (cores * 1000) / totalMs;

    // 2. The pipelined run: runInference per image (preprocess slots, engine queue, workers, postprocess).
    log(`pipelined: ${parallel} in flight for ${opts.durationS} s`);
    const pipelined = await closedLoop(parallel, warmupMs, durationMs, (i) => runInference(engine, setup, img(i)), () => engine.resetStats(), errors);
    const stats = engine.getStats().pipeline;

    // 3. The plain sequential loop: decode, infer, postprocess, one image at a time.
    log(`sequential loop for ${opts.durationS} s`);
    const seqAllocator = engineAllocator(seqEngine);
    const sequential = await closedLoop(
      1,
      warmupMs,
      durationMs,
      async (i) => {
        const prepared = await prepareInput(seqAllocator, seqHandle.info, img(i), { image });
        const result = await seqEngine.submit(seqHandle, prepared.feeds);
        return shapeResult(result, setup.output, false);
      },
      () => undefined,
      errors,
    );

    const eventLoopP99Ms = 5;
    const ratios = { vsCpuBound: pipelined.imagesPerSec / boundImagesPerSec, vsSequential: pipelined.imagesPerSec / sequential.imagesPerSec, cpuEfficiency: pipelined.cpuMsPerImage ? totalMs / pipelined.cpuMsPerImage : 0 };
    return {
      model: { name: model.name, description: model.description, precision: model.info.precision, input: { name: input.name, type: input.type, dims: input.dims } },
      images: set,
      config: { workers: device.parallelism, threads: 1, parallel, preprocessSlots: slots, sequentialThreads: cores, durationS: opts.durationS, warmupS: opts.warmupS },
      cpuWork: { decodeResizeMs, inferMs, totalMs, cores, boundImagesPerSec },
      pipelined,
      sequential,
      ratios,
      targets: {
        vsCpuBound: 0.9,
        vsSequential: 1.5,
        eventLoopP99Ms,
        met: { vsCpuBound: ratios.vsCpuBound >= 0.9, vsSequential: ratios.vsSequential >= 1.5, eventLoop: pipelined.eventLoopDelayMs.p99 <= eventLoopP99Ms },
      },
      stages: stats.stages,
      bottleneck: stats.bottleneck,
      concurrency: stats.concurrency,
      simulated: false,
      failed: pipelined.failed + sequential.failed,
      errors,
      host: hostInfo(),
    };
  } finally {
    await Promise.all([engine.close(), seqEngine.close()]);
  }
}

export function formatImageBench(r: ImageBenchResult): string {
  const c = r.config;
  const w = r.cpuWork;
  const yes = (met: boolean) => (met ? 'met' : 'MISSED');
  const lines = [
    `${r.model.name} (${r.model.precision}): ${r.model.description}`,
    `images: ${r.images.source}, ${r.images.count} x ${r.images.width}x${r.images.height}, ${int(r.images.meanBytes / 1024)} KB on average`,
    '',
    `  pipelined        ${r.pipelined.imagesPerSec.toFixed(1)} images/s  (${plural(c.workers, 'worker')} x 1 thread, ${c.preprocessSlots} preprocess slots, ${c.parallel} in flight)`,
    `  sequential loop  ${r.sequential.imagesPerSec.toFixed(1)} images/s  (one image at a time, inference on 1 worker x ${plural(c.sequentialThreads, 'thread')})`,
    `  CPU work/image   decode+resize ${ms(w.decodeResizeMs)} ms + inference ${ms(w.inferMs)} ms = ${ms(w.totalMs)} ms CPU -> bound ${w.cores} cores x 1 s / ${ms(w.totalMs)} ms = ${w.boundImagesPerSec.toFixed(1)} images/s`,
    `  vs CPU bound     ${r.ratios.vsCpuBound.toFixed(3)}x (target >= ${r.targets.vsCpuBound}x, ${yes(r.targets.met.vsCpuBound)})`,
    `  vs sequential    ${r.ratios.vsSequential.toFixed(3)}x (target >= ${r.targets.vsSequential}x, ${yes(r.targets.met.vsSequential)})`,
    `  event-loop p99   ${ms(r.pipelined.eventLoopDelayMs.p99)} ms pipelined, ${ms(r.sequential.eventLoopDelayMs.p99)} ms sequential (target <= ${r.targets.eventLoopP99Ms} ms, ${yes(r.targets.met.eventLoop)})`,
    `  latency          p50 ${ms(r.pipelined.latencyMs.p50)}  p99 ${ms(r.pipelined.latencyMs.p99)} ms pipelined; p50 ${ms(r.sequential.latencyMs.p50)} ms sequential`,
    `  process CPU      ${ms(r.pipelined.cpuMsPerImage)} ms/image pipelined (${pct((r.pipelined.cpuMsPerImage * r.pipelined.imagesPerSec) / 1000 / w.cores)} of the cores; CPU work / CPU spent ${r.ratios.cpuEfficiency.toFixed(3)}), ${ms(r.sequential.cpuMsPerImage)} ms/image sequential`,
    `  bottleneck       ${r.bottleneck ? r.bottleneck.reason : 'none measured'}`,
    `  concurrency      ${r.concurrency.reason} (sharp ${r.concurrency.sharpThreadsPerImage ?? '?'} threads/image, UV_THREADPOOL_SIZE ${r.concurrency.uvThreadpoolSize})`,
    '',
    table(
      ['stage', 'slots', 'done', 'p50 ms', 'p99 ms', 'wait p50 ms', 'busy'],
      Object.values(r.stages)
        .filter((s) => s.present)
        .map((s) => [s.stage, String(s.concurrency), String(s.completed), ms(s.serviceMs.p50), ms(s.serviceMs.p99), ms(s.waitMs.p50), pct(s.busyShare)]),
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
    '  (stages without a device link, the transfers on a CPU, cost nothing and are not listed)',
  ];
  if (r.failed) lines.push(`  failed           ${r.failed}: ${r.errors.join('; ')}`);
  return lines.join('\n');
}
