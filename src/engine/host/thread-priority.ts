import { execFileSync } from 'child_process';
import { Worker } from 'worker_threads';
import { promises as fs, readlinkSync } from 'fs';
import { setPriority } from 'os';
import { EngineError } from '../errors';

/**
 * The engine's CPU-heavy threads (inference workers with the onnxruntime threads they start, and
 * libvips' decode threads; in 'idle' every thread but the main one, see lowerBackgroundThreads)
 * give way to the main thread, which runs Node-RED's event loop.
 *
 * - 'nice' (default): nice 10. When every core is busy a waking main thread can still wait for the
 *   next scheduler tick (4 ms at HZ 250) behind them, but they keep a fair share against other
 *   programs.
 * - 'idle': Linux's SCHED_IDLE class, for a box that does nothing else. A waking main thread takes
 *   the core at once once it is the only thread of normal weight (see lowerBackgroundThreads): 2
 *   cores decoding 1080p JPEGs and inferring measured event-loop p99 4.7-5.0 ms, against 4.9-6.2 ms
 *   at nice (medians of 3 rounds of bench:pipeline, three runs each).
 *   But they get almost nothing while other programs keep every core busy: with two busy loops on
 *   this 2-core host the simulated sticks' host work stalled. Node has no API for scheduling
 *   classes, so util-linux's `chrt` sets it; without chrt, 'nice' applies.
 * - 'normal': the process's own priority.
 *
 * Chosen with NCS2_BACKGROUND_PRIORITY; the worker threads read it from the same environment.
 */
export type BackgroundPriority = 'idle' | 'nice' | 'normal';
export type PriorityOutcome = 'idle' | 'nice' | 'unchanged';

const BACKGROUND_NICE = 10;
const PRIORITIES: BackgroundPriority[] = ['idle', 'nice', 'normal'];
const CHRT_TIMEOUT_MS = 2000;

export function backgroundPriority(env: NodeJS.ProcessEnv = process.env): BackgroundPriority {
  const value = env.NCS2_BACKGROUND_PRIORITY;
  if (value === undefined || value === '') return 'nice';
  if ((PRIORITIES as string[]).includes(value)) return value as BackgroundPriority;
  throw new EngineError(`NCS2_BACKGROUND_PRIORITY must be one of ${PRIORITIES.join(', ')}; got ${JSON.stringify(value)}`, 'CONFIG_INVALID');
}

/** The kernel's id of the calling thread (Linux), or undefined elsewhere. */
function currentThreadId(): number | undefined {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return undefined;
  }
}

function niceFallback(tid: number): PriorityOutcome {
  try {
    setPriority(tid, BACKGROUND_NICE);
    return 'nice';
  } catch {
    return 'unchanged';
  }
}

/**
 * Lowers the calling thread (a worker, before it starts the threads that should inherit it).
 * Blocks for the chrt call: never call it on the main thread.
 */
export function lowerThisThread(mode: BackgroundPriority = backgroundPriority()): PriorityOutcome {
  if (mode === 'normal') return 'unchanged';
  const tid = currentThreadId();
  if (mode === 'idle' && tid !== undefined) {
    try {
      execFileSync('chrt', ['--idle', '--pid', '0', String(tid)], { stdio: 'ignore', timeout: CHRT_TIMEOUT_MS });
      return 'idle';
    } catch {
      // no chrt here, or not permitted: fall back to nice
    }
  }
  return niceFallback(0);
}

/**
 * A worker thread that runs chrt for other threads. Spawning a process forks this one, which costs
 * the calling thread about 20 ms with a 200 MB heap (measured here): on the main thread that is
 * the very stall this module exists to prevent, so the fork happens on this thread instead.
 */
const LOWERER_SCRIPT = `
const { parentPort } = require('worker_threads');
const { execFileSync } = require('child_process');
parentPort.on('message', (tid) => {
  let ok = true;
  try {
    execFileSync('chrt', ['--idle', '--pid', '0', String(tid)], { stdio: 'ignore', timeout: ${CHRT_TIMEOUT_MS} });
  } catch {
    ok = false;
  }
  parentPort.postMessage({ tid, ok });
});`;
let lowerer: Worker | undefined;
const awaitingLowerer = new Map<number, (outcome: PriorityOutcome) => void>();

function lowererWorker(): Worker {
  if (lowerer) return lowerer;
  const worker = new Worker(LOWERER_SCRIPT, { eval: true });
  worker.on('message', ({ tid, ok }: { tid: number; ok: boolean }) => {
    const resolve = awaitingLowerer.get(tid);
    awaitingLowerer.delete(tid);
    if (awaitingLowerer.size === 0) worker.unref();
    resolve?.(ok ? 'idle' : niceFallback(tid));
  });
  const gone = () => {
    if (lowerer === worker) lowerer = undefined;
    for (const [tid, resolve] of awaitingLowerer) resolve(niceFallback(tid));
    awaitingLowerer.clear();
  };
  worker.on('error', gone);
  worker.on('exit', gone);
  return (lowerer = worker);
}

/** Lowers another thread of this process by its id, without blocking the caller. */
export function lowerThread(tid: number, mode: BackgroundPriority = backgroundPriority()): Promise<PriorityOutcome> {
  if (mode === 'normal') return Promise.resolve('unchanged');
  if (mode === 'nice') return Promise.resolve(niceFallback(tid));
  if (awaitingLowerer.has(tid)) return Promise.resolve('unchanged');
  return new Promise((resolve) => {
    awaitingLowerer.set(tid, resolve);
    // held only while it has work: an idle lowerer must not keep the process from exiting
    const worker = lowererWorker();
    worker.ref();
    worker.postMessage(tid);
  });
}

const VIPS_THREAD_NAME = 'libvips worker';
const lowered = new Map<number, PriorityOutcome>();

/**
 * Lowers the process's background threads not seen before (found in /proc/self/task; elsewhere
 * none are found) and returns how many live ones are lowered:
 *
 * - 'nice': libvips' decode threads, by the name libvips gives them (the workers lower themselves).
 * - 'idle': every thread but the main one, so libuv's pool (sharp runs each image's pipeline on one
 *   of them) and V8's helper threads as well. Linux's EEVDF scheduler (6.6 and later) queues a main
 *   thread that shared a core with threads of its own weight behind them when it wakes, SCHED_IDLE
 *   ones included, until its share evens out; the next scheduler tick (4 ms at HZ 250) then lets it
 *   run. scripts/main-thread-waits.js showed it: the core passed from one SCHED_IDLE thread to
 *   another while the woken main thread waited. As the one normal thread it runs at once: event-loop
 *   p99 of bench:pipeline 4.5/5.0/5.9/5.0 ms against 6.9/6.0/6.0/6.5 ms with only the engine's own
 *   threads lowered (medians of 3 rounds, alternating runs).
 */
export async function lowerBackgroundThreads(mode: BackgroundPriority = backgroundPriority()): Promise<number> {
  if (mode === 'normal') return 0;
  let tids: string[];
  try {
    tids = await fs.readdir('/proc/self/task');
  } catch {
    return 0;
  }
  const live = new Set<number>();
  const pending: Array<Promise<void>> = [];
  for (const name of tids) {
    const tid = Number(name);
    live.add(tid);
    if (lowered.has(tid) || tid === process.pid) continue;
    if (mode === 'nice') {
      try {
        if ((await fs.readFile(`/proc/self/task/${name}/comm`, 'utf8')).trim() !== VIPS_THREAD_NAME) continue;
      } catch {
        continue; // the thread ended meanwhile
      }
    }
    lowered.set(tid, 'unchanged');
    pending.push(lowerThread(tid, mode).then((outcome) => void lowered.set(tid, outcome)));
  }
  await Promise.all(pending);
  // Thread ids are reused: forget the ones that ended.
  for (const tid of lowered.keys()) if (!live.has(tid)) lowered.delete(tid);
  let count = 0;
  for (const outcome of lowered.values()) if (outcome !== 'unchanged') count++;
  return count;
}
