import { Worker } from 'worker_threads';

export type WorkerAnswer<T> = ({ ok: true } & T) | { ok: false; name?: string; message: string };

/**
 * Runs a script that posts one answer ({ ok: true, ...result } or { ok: false, message }) and
 * exits. For onnxruntime work that would otherwise block the main thread (its run() is
 * synchronous). The worker is never terminated: terminating a thread inside onnxruntime can abort
 * the whole process, and the script exits by itself once it has answered.
 */
export function runOneShotWorker<T>(script: string, workerData: unknown, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(script, { workerData });
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
