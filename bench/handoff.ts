/**
 * `npm run bench:handoff`: what handing batches to worker threads costs the main thread (Node-RED's
 * event loop), the part of ncs2-infer's cost that grows with the number of batches.
 *
 * 1. Gatherer: the TensorGatherer ncs2-infer uses on a graph with batching, in a closed loop of
 *    single-sample MLP tensors (each result re-adds one request on the next setImmediate, as
 *    Node-RED delivers messages), on the CPU device's worker threads and on a stand-in device that
 *    answers on the main thread (same engine, no worker, no inference). The difference is the
 *    hand-over and everything it brings with it.
 * 2. Ping-pong: the bare hand-over, two workers, two runs in flight each, a worker busy for
 *    WORK_US per run (a stand-in for inference), with a batch of 32 MLP rows copied in per run:
 *    `postMessage` both ways with the buffers transferred (what the CPU device does), `postMessage`
 *    both ways with the data in a SharedArrayBuffer, and an `Atomics.notify` doorbell to the worker
 *    with `postMessage` back.
 *
 * Modes alternate round by round; each reports the median over its rounds of main-thread busy time
 * (event-loop utilization) per message or per round trip.
 * Options (environment): BENCH_ROUNDS (default 5), BENCH_SECONDS per round (default 1.5), BENCH_OUT
 * (default bench/results/handoff.json).
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import { buildMlp, InferenceEngine, TensorGatherer } from '../src/engine';
import type { InferenceSetup } from '../src/engine';
import { MainThreadStandIn } from './stand-in-device';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const OUT = process.env.BENCH_OUT ?? path.join(__dirname, '..', '..', 'bench', 'results', 'handoff.json');
const MLP = { inputSize: 784, hidden: [128], outputSize: 10, seed: 8 };
const IN_FLIGHT = 64;
const BATCH_ROWS = 32;
const WORK_US = 150;
const WORKERS = 2;

type PingPongMode = 'transfer' | 'shared' | 'doorbell';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Main-thread busy microseconds per counted event, and events per second, over one window. */
async function measureWindow(count: () => number): Promise<{ mainUsPer: number; perSec: number }> {
  const n0 = count();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const n = count() - n0;
  const elu = performance.eventLoopUtilization(elu0);
  return { mainUsPer: (elu.active * 1000) / n, perSec: n / ((performance.now() - t0) / 1000) };
}

/** A closed loop of IN_FLIGHT single-sample requests through a TensorGatherer on one engine. */
async function gathererLoop(device: 'cpu' | 'stand-in') {
  const engine = new InferenceEngine();
  const deviceId = device === 'cpu' ? 'cpu' : 'stand-in';
  if (device === 'cpu') engine.acquireDevice({ kind: 'cpu', id: deviceId, workers: WORKERS, threadsPerWorker: 1 });
  else engine.addDevice(new MainThreadStandIn(deviceId, WORKERS));
  const handle = await engine.loadGraph(buildMlp(MLP), { devices: [deviceId], batching: true });
  const setup: InferenceSetup = { handle, image: new Error('tensor input only'), maxBatch: 64, output: { kind: 'raw', format: 'typed' }, devices: [deviceId] };
  const input = new Float32Array(MLP.inputSize).fill(0.25);
  const tensor = { data: input, dims: [1, MLP.inputSize], type: 'float32' as const };
  let answered = 0;
  let running = true;
  let failure: Error | undefined;
  const gatherer: TensorGatherer<number> = new TensorGatherer(engine, setup, (token, outcome) => {
    if (outcome instanceof Error) failure ??= outcome;
    answered++;
    if (running) setImmediate(() => gatherer.add(token, tensor, performance.now(), 0));
  });
  for (let i = 0; i < IN_FLIGHT; i++) gatherer.add(i, tensor, performance.now(), 0);
  return {
    measure: async () => {
      const m = await measureWindow(() => answered);
      if (failure) throw failure;
      return { ...m, batchCap: engine.batchCap(handle) };
    },
    close: async () => {
      running = false;
      await sleep(100);
      await engine.close();
    },
  };
}

/** Worker side of the ping-pong: busy WORK_US per run, then answers. */
function pingPongWorker(): void {
  const { mode, doorbell } = workerData as { mode: PingPongMode; doorbell: SharedArrayBuffer };
  const busy = () => {
    const end = performance.now() + WORK_US / 1000;
    while (performance.now() < end);
  };
  if (mode === 'doorbell') {
    const bell = new Int32Array(doorbell);
    let served = 0;
    for (;;) {
      Atomics.wait(bell, 0, served);
      const rung = Atomics.load(bell, 0);
      if (rung < 0) return;
      while (served < rung) {
        served++;
        busy();
        parentPort!.postMessage({ op: 'results', id: served, results: [1, 0, 10, 32, 0, 0] });
      }
    }
  }
  parentPort!.on('message', (msg: { op: string; id: number; tasks: number[]; buffers?: ArrayBuffer[] }) => {
    if (msg.op === 'close') process.exit(0);
    busy();
    if (msg.buffers) parentPort!.postMessage({ op: 'results', id: msg.id, results: msg.tasks, buffers: msg.buffers }, msg.buffers);
    else parentPort!.postMessage({ op: 'results', id: msg.id, results: msg.tasks });
  });
}

/** Two workers with two runs in flight each; each run copies a batch in and waits for the answer. */
async function pingPong(mode: PingPongMode) {
  const rows = new Float32Array(MLP.inputSize * BATCH_ROWS).fill(0.25);
  const shared = new Float32Array(new SharedArrayBuffer(rows.byteLength * 4));
  const spare: ArrayBuffer[][] = [];
  let roundTrips = 0;
  let running = true;
  const tasks = [1, 0, 0, MLP.inputSize, BATCH_ROWS, 1, 1, 10, 0, 0];
  const workers = Array.from({ length: WORKERS }, (_, index) => {
    const doorbell = new SharedArrayBuffer(4);
    const worker = new Worker(__filename, { workerData: { mode, doorbell } });
    const bell = new Int32Array(doorbell);
    let id = 0;
    const send = () => {
      id++;
      if (mode === 'transfer') {
        const buffers = spare.pop() ?? [new ArrayBuffer(rows.byteLength), new ArrayBuffer(4096)];
        new Float32Array(buffers[0]).set(rows);
        worker.postMessage({ op: 'run', id, tasks, buffers }, buffers);
        return;
      }
      shared.set(rows, (index * 2 + (id % 2)) * rows.length);
      if (mode === 'shared') worker.postMessage({ op: 'run', id, tasks });
      else {
        Atomics.add(bell, 0, 1);
        Atomics.notify(bell, 0);
      }
    };
    worker.on('message', (msg: { buffers?: ArrayBuffer[] }) => {
      roundTrips++;
      if (msg.buffers) spare.push(msg.buffers);
      if (running) setImmediate(send);
    });
    return { worker, bell, send };
  });
  for (const w of workers) {
    w.send();
    w.send();
  }
  await sleep(300);
  return {
    measure: () => measureWindow(() => roundTrips),
    close: async () => {
      running = false;
      await sleep(50);
      for (const w of workers) {
        if (mode === 'doorbell') {
          Atomics.store(w.bell, 0, -1);
          Atomics.notify(w.bell, 0);
        } else w.worker.postMessage({ op: 'close' });
        await w.worker.terminate();
      }
    },
  };
}

async function main(): Promise<void> {
  const gatherer: Record<'cpu' | 'stand-in', Array<{ mainUsPer: number; perSec: number; batchCap?: number }>> = { cpu: [], 'stand-in': [] };
  const pingPongRounds: Record<PingPongMode, Array<{ mainUsPer: number; perSec: number }>> = { transfer: [], shared: [], doorbell: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const device of ['cpu', 'stand-in'] as const) {
      const loop = await gathererLoop(device);
      await sleep(500); // warm-up: JIT, pools, the adaptive batch cap
      gatherer[device].push(await loop.measure());
      await loop.close();
      const m = gatherer[device].at(-1)!;
      process.stderr.write(`round ${round + 1}/${ROUNDS}: gatherer on ${device}: ${m.mainUsPer.toFixed(2)} us of main thread per message, ${m.perSec.toFixed(0)} msg/s\n`);
    }
    for (const mode of ['transfer', 'shared', 'doorbell'] as const) {
      const pp = await pingPong(mode);
      pingPongRounds[mode].push(await pp.measure());
      await pp.close();
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ping-pong ${mode}: ${pingPongRounds[mode].at(-1)!.mainUsPer.toFixed(1)} us of main thread per round trip\n`);
    }
  }
  const summary = <K extends string>(rounds: Record<K, Array<{ mainUsPer: number; perSec: number }>>) =>
    Object.fromEntries(Object.entries<Array<{ mainUsPer: number; perSec: number }>>(rounds).map(([k, v]) => [k, { mainUsMedian: median(v.map((m) => m.mainUsPer)), perSecMedian: median(v.map((m) => m.perSec)), rounds: v }]));
  const report = {
    benchmark: 'handoff',
    date: new Date().toISOString(),
    host: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), node: process.version, loadAverage: os.loadavg() },
    method: `modes alternate; ${ROUNDS} rounds of ${SECONDS} s; medians of main-thread busy time (event-loop utilization) per message (gatherer) or per round trip (ping-pong)`,
    gatherer: { model: 'mlp-784-128-10', inFlight: IN_FLIGHT, workers: WORKERS, usPerMessage: summary(gatherer) },
    pingPong: { workers: WORKERS, runsInFlightPerWorker: 2, workUs: WORK_US, batchBytes: MLP.inputSize * BATCH_ROWS * 4, usPerRoundTrip: summary(pingPongRounds) },
  };
  await fs.mkdir(path.dirname(OUT), { recursive: true });
  await fs.writeFile(OUT, `${JSON.stringify(report, null, 2)}\n`);
  const g = report.gatherer.usPerMessage;
  console.log(`gatherer, ${IN_FLIGHT} single-sample MLP requests in flight, main-thread us per message (median of ${ROUNDS}):`);
  console.log(`  CPU device (${WORKERS} workers): ${g.cpu.mainUsMedian.toFixed(2)} us (${g.cpu.perSecMedian.toFixed(0)} msg/s); stand-in device on the main thread: ${g['stand-in'].mainUsMedian.toFixed(2)} us (${g['stand-in'].perSecMedian.toFixed(0)} msg/s)`);
  const p = report.pingPong.usPerRoundTrip;
  console.log(`ping-pong, ${WORKERS} workers x 2 in flight, ${WORK_US} us of work, main-thread us per round trip: transfer ${p.transfer.mainUsMedian.toFixed(1)}, shared memory ${p.shared.mainUsMedian.toFixed(1)}, Atomics doorbell ${p.doorbell.mainUsMedian.toFixed(1)}`);
  console.log(`wrote ${path.relative(process.cwd(), OUT)}`);
}

if (!isMainThread) pingPongWorker();
else
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(err.stack ?? err.message);
      process.exit(1);
    },
  );
