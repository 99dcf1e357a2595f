/**
 * `npm run bench:faults`: what the CPU device's sessions would cost in a child process instead
 * of worker threads, and how the worker-thread device behaves when it is closed or the process
 * exits in the middle of a long inference.
 *
 * 1. Hand-over cost. A process can survive the death of a child process, not of a thread inside
 *    onnxruntime; the price is the hand-over. An echo round trip of one tensor, in closed loops of
 *    1 and 32 in flight: worker_threads postMessage with the buffer transferred (what the CPU device
 *    does) against child_process IPC with advanced serialization (a child cannot share or take over
 *    an ArrayBuffer: the bytes are copied through a pipe). Tensors: one 784-float MLP input
 *    (3,136 B) and one 1x3x224x224 float image (602,112 B). Modes alternate round by round; each
 *    reports medians of wall time per round trip and of main-thread busy time (event-loop
 *    utilization) per round trip.
 * 2. Faults. In a child process each: close() and process.exit() 300 ms into a run of about 2 s on
 *    one thread. Reports the exit code (134 is an abort) and how long close() took.
 * The host's load average is recorded with the figures: on a shared machine they move with it.
 * Options (environment): BENCH_ROUNDS (default 5), BENCH_OUT (default bench/results/faults.json).
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile, fork, type ChildProcess } from 'child_process';
import { performance } from 'perf_hooks';
import { Worker } from 'worker_threads';
import { CpuDevice, buildMlp } from '../src/engine';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const OUT = process.env.BENCH_OUT ?? path.join(__dirname, '..', '..', 'bench', 'results', 'faults.json');
const TENSORS = { 'mlp input 3,136 B': 784 * 4, 'image 602,112 B': 3 * 224 * 224 * 4 };
const ROUND_TRIPS = { 'mlp input 3,136 B': 4000, 'image 602,112 B': 400 };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Echo {
  send(buffer: ArrayBuffer): void;
  onReply(fn: () => void): void;
  close(): Promise<unknown>;
}

function workerEcho(): Echo {
  const worker = new Worker(`require('worker_threads').parentPort.on('message', (b) => require('worker_threads').parentPort.postMessage(b, [b]));`, { eval: true });
  return { send: (b) => worker.postMessage(b, [b]), onReply: (fn) => worker.on('message', fn), close: () => worker.terminate() };
}

function childEcho(): Echo {
  const child: ChildProcess = fork(__filename, ['echo'], { serialization: 'advanced' });
  return {
    send: (b) => child.send(Buffer.from(b)),
    onReply: (fn) => child.on('message', fn),
    close: () => new Promise((resolve) => child.once('exit', resolve).kill()),
  };
}

/** One closed loop: `inFlight` tensors bounce until `total` round trips are done. */
async function loop(echo: Echo, bytes: number, inFlight: number, total: number): Promise<{ wallUs: number; mainUs: number }> {
  let sent = 0;
  let done = 0;
  const finished = new Promise<void>((resolve) =>
    echo.onReply(() => {
      if (++done === total) resolve();
      else if (sent < total) {
        sent++;
        echo.send(new ArrayBuffer(bytes));
      }
    }),
  );
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  for (; sent < inFlight; sent++) echo.send(new ArrayBuffer(bytes));
  await finished;
  const wallMs = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  return { wallUs: (wallMs * 1000) / total, mainUs: (elu.active * 1000) / total };
}

async function handOverCost(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [tensor, bytes] of Object.entries(TENSORS)) {
    for (const inFlight of [1, 32]) {
      const rounds: Record<string, Array<{ wallUs: number; mainUs: number }>> = { worker_threads: [], child_process: [] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const [mode, make] of [['worker_threads', workerEcho], ['child_process', childEcho]] as const) {
          const echo = make();
          rounds[mode].push(await loop(echo, bytes, inFlight, ROUND_TRIPS[tensor as keyof typeof ROUND_TRIPS]));
          await echo.close();
        }
      }
      const summary = Object.fromEntries(Object.entries(rounds).map(([mode, v]) => [mode, { wallUsMedian: median(v.map((m) => m.wallUs)), mainUsMedian: median(v.map((m) => m.mainUs)) }]));
      out[`${tensor}, ${inFlight} in flight`] = summary;
      const w = summary.worker_threads;
      const c = summary.child_process;
      console.log(
        `${tensor}, ${inFlight} in flight: worker_threads ${w.wallUsMedian.toFixed(1)} us (main ${w.mainUsMedian.toFixed(1)}), child_process ${c.wallUsMedian.toFixed(1)} us (main ${c.mainUsMedian.toFixed(1)}) per round trip: x${(c.wallUsMedian / w.wallUsMedian).toFixed(1)}`,
      );
    }
  }
  return out;
}

/** In a child: a long run on one thread, then close() or process.exit() 300 ms into it. */
async function faultChild(mode: 'close' | 'exit'): Promise<void> {
  const device = new CpuDevice({ workers: 1, threadsPerWorker: 1 });
  await device.load({ key: 'slow', model: buildMlp({ inputSize: 1024, hidden: [2048, 2048], outputSize: 10, seed: 1, batch: 'dynamic' }), session: {} });
  const rows = 10000;
  device.run({ graphKey: 'slow', inputs: [{ name: 'input', type: 'float32', dims: [rows, 1024], data: new Float32Array(rows * 1024) }] }).catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 300));
  if (mode === 'exit') process.exit(0);
  const t0 = performance.now();
  await device.close();
  process.stdout.write(JSON.stringify({ closeMs: performance.now() - t0 }));
}

function runFault(mode: 'close' | 'exit'): Promise<{ exitCode: number | null; closeMs?: number; wallMs: number }> {
  const t0 = performance.now();
  return new Promise((resolve) =>
    execFile(process.execPath, [__filename, 'fault', mode], { timeout: 120_000 }, (err, stdout) => {
      const exitCode = err ? ((err as { code?: number }).code ?? null) : 0;
      resolve({ exitCode, ...(stdout ? (JSON.parse(stdout) as { closeMs: number }) : {}), wallMs: performance.now() - t0 });
    }),
  );
}

async function main(): Promise<void> {
  const handOver = await handOverCost();
  const faults = { closeDuringRun: await runFault('close'), exitDuringRun: await runFault('exit') };
  console.log(`close() 300 ms into a run: exit code ${faults.closeDuringRun.exitCode}, close() took ${faults.closeDuringRun.closeMs?.toFixed(0)} ms`);
  console.log(`process.exit() 300 ms into a run: exit code ${faults.exitDuringRun.exitCode} (the process waited for the run: ${faults.exitDuringRun.wallMs.toFixed(0)} ms in all)`);
  await fs.mkdir(path.dirname(OUT), { recursive: true });
  await fs.writeFile(OUT, `${JSON.stringify({ date: new Date().toISOString(), cores: os.availableParallelism(), loadAverage1m: os.loadavg()[0], rounds: ROUNDS, handOver, faults }, null, 2)}\n`);
}

if (process.argv[2] === 'echo') process.on('message', (b) => process.send!(b));
else if (process.argv[2] === 'fault') void faultChild(process.argv[3] as 'close' | 'exit');
else void main();
