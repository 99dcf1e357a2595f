/**
 * `npm run bench:pipeline`: 1920x1080 JPEG -> classification on the MobileNetV2-like CNN in int8,
 * through the engine's stages, against the CPU-work bound and a plain sequential loop measured in
 * the same run (src/cli/image-bench.ts). Each round waits for a quiet host first and is reported
 * whole; the summary takes the median round, so one burst of load from another process does not
 * decide the result. Writes bench/results/pipeline.json. NCS2_BACKGROUND_PRIORITY (nice by default,
 * idle for a dedicated box) decides how decode and inference threads yield to the event loop.
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { Command, InvalidArgumentError } from 'commander';
import { formatImageBench, runImageBench, type ImageBenchResult } from '../src/cli/image-bench';
import { resolveModel } from '../src/cli/models';
import { waitForQuietHost, type QuietResult } from '../src/cli/load';
import { backgroundPriority } from '../src/engine';

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  // sharp's pipelines run on libuv's threadpool (4 threads unless set): on a host with more cores
  // the decode slots would stop at 4. The pool is sized on its first use, which has not happened yet.
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, os.availableParallelism()));
  const opts = new Command()
    .name('bench:pipeline')
    .description('JPEG-to-result pipeline vs the CPU-work bound and a sequential loop, same run')
    .option('--model <spec>', 'built-in model or .onnx file', 'cnn-int8')
    .option('--images <source>', "'generated' or a folder of images", 'generated')
    .option('--count <n>', 'generated frames', Number, 16)
    .option('--duration <s>', 'measured seconds per loop', Number, 5)
    .option('--rounds <n>', 'rounds (each reported; the median summarises)', Number, 3)
    .option('--out <file>', 'results file', path.join(__dirname, '..', '..', 'bench', 'results', 'pipeline.json'))
    .parse(process.argv)
    .opts<{ model: string; images: string; count: number; duration: number; rounds: number; out: string }>();
  for (const key of ['count', 'duration', 'rounds'] as const) {
    if (!Number.isFinite(opts[key]) || opts[key] <= 0) throw new InvalidArgumentError(`--${key} must be a number > 0, got ${opts[key]}`);
  }
  const model = await resolveModel(opts.model);
  const rounds: Array<ImageBenchResult & { hostBefore: QuietResult }> = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const hostBefore = await waitForQuietHost({ maxWaitMs: 15_000 });
    const r = await runImageBench(model, { images: opts.images, count: opts.count, durationS: opts.duration, warmupS: 1, parallel: 'auto', preprocessSlots: 'auto' });
    rounds.push({ ...r, hostBefore });
    console.log(`round ${round}${hostBefore.quiet ? '' : ` (host busy: ${(100 * (1 - hostBefore.idle)).toFixed(0)}% of the cores used by others before it)`}:\n${formatImageBench(r)}\n`);
  }
  const summary = {
    vsCpuBound: median(rounds.map((r) => r.ratios.vsCpuBound)),
    vsSequential: median(rounds.map((r) => r.ratios.vsSequential)),
    eventLoopP99Ms: median(rounds.map((r) => r.pipelined.eventLoopDelayMs.p99)),
    pipelinedImagesPerSec: median(rounds.map((r) => r.pipelined.imagesPerSec)),
    sequentialImagesPerSec: median(rounds.map((r) => r.sequential.imagesPerSec)),
    boundImagesPerSec: median(rounds.map((r) => r.cpuWork.boundImagesPerSec)),
    busyRounds: rounds.filter((r) => !r.hostBefore.quiet).length,
  };
  const commit = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  })();
  // How decode and inference threads yield to the main thread decides the event-loop p99 here.
  const priority = backgroundPriority();
  const env = process.env.NCS2_BACKGROUND_PRIORITY ? `NCS2_BACKGROUND_PRIORITY=${process.env.NCS2_BACKGROUND_PRIORITY} ` : '';
  const out = { command: `${env}npm run bench:pipeline -- ${process.argv.slice(2).join(' ')}`.trim(), date: new Date().toISOString(), commit, backgroundPriority: priority, summary, rounds };
  await fs.mkdir(path.dirname(opts.out), { recursive: true });
  await fs.writeFile(opts.out, JSON.stringify(out, null, 2) + '\n');
  console.log(
    `median of ${rounds.length}: ${summary.pipelinedImagesPerSec.toFixed(1)} images/s pipelined, ${summary.vsCpuBound.toFixed(3)}x the CPU-work bound (target >= 0.9), ${summary.vsSequential.toFixed(3)}x the sequential loop (target >= 1.5), event-loop p99 ${summary.eventLoopP99Ms.toFixed(2)} ms (target <= 5; background threads ${priority})${summary.busyRounds ? `; ${summary.busyRounds} round(s) started on a busy host` : ''}\nwritten to ${opts.out}`,
  );
}

main().catch((err: Error) => {
  console.error(`bench:pipeline: ${err.message}`);
  process.exitCode = 1;
});
