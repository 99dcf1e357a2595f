import { Worker } from 'worker_threads';
import * as path from 'path';
import type { OpCount } from './op-count';

/**
 * Counting ops needs one probe run through onnxruntime, which is synchronous: on the main thread
 * it would stall Node-RED for the whole run of a big model. A short-lived worker does it instead.
 */
export function countModelOpsOffThread(bytes: Uint8Array, inputShapes?: Record<string, number[]>): Promise<OpCount> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'op-count-worker.js'), { workerData: { bytes, inputShapes } });
    let settled = false;
    worker.once('message', (msg: { ok: true; count: OpCount } | { ok: false; message: string }) => {
      settled = true;
      if (msg.ok) resolve(msg.count);
      else reject(new Error(msg.message));
      // the worker exits by itself once it has answered; terminating a thread that holds an
      // onnxruntime session can abort the whole process
    });
    worker.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`op-count worker exited with code ${code}`));
      settled = true;
    });
  });
}
