import { parentPort, Worker } from 'worker_threads';
import { createRuntimeFlags, enterRuntime, forgetRuntimeFlags, leaveRuntime } from '../devices/cpu/runtime-guard';

export type WorkerAnswer<T> = ({ ok: true } & T) | { ok: false; name?: string; message: string };

/**
 * Runs a script that posts one answer ({ ok: true, ...result } or { ok: false, message }) and
 * exits. For onnxruntime work that would otherwise block the main thread (its run() is
 * synchronous). The worker is never terminated: terminating a thread inside onnxruntime can abort
 * the whole process, and the script exits by itself once it has answered. The script gets
 * `runtimeFlags` in its workerData and answers through answerWithinRuntime, so a process that
 * exits meanwhile waits for its native work instead of aborting (see runtime-guard).
 */
export function runOneShotWorker<T>(script: string, workerData: Record<string, unknown>, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const runtimeFlags = createRuntimeFlags();
    const worker = new Worker(script, { workerData: { ...workerData, runtimeFlags } });
    worker.once('exit', () => forgetRuntimeFlags(runtimeFlags));
    let settled = false;
    worker.once('message', (msg: WorkerAnswer<T>) => {
      settled = true;
      if (msg.ok) resolve(msg);
      else reject(Object.assign(new Error(msg.message), msg.name ? { name: msg.name } : {}));
    });
    worker.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`${what} worker exited with code ${code}`));
      settled = true;
    });
  });
}

/** In the worker: does the work as one native section and posts its answer (or its error). */
export function answerWithinRuntime(runtimeFlags: Int32Array, work: () => Promise<{ answer: { ok: true } & Record<string, unknown>; transfer?: ArrayBuffer[] }>): void {
  const fail = (err: Error) => parentPort!.postMessage({ ok: false, name: err.name, message: err.message });
  try {
    enterRuntime(runtimeFlags);
  } catch (err) {
    return fail(err as Error);
  }
  work()
    .then(({ answer, transfer }) => parentPort!.postMessage(answer, transfer ?? []), fail)
    .finally(() => leaveRuntime(runtimeFlags));
}
