import * as path from 'path';
import { runOneShotWorker } from '../host/one-shot-worker';
import type { OpCount } from './op-count';

/**
 * Counting ops needs one probe run through onnxruntime, which is synchronous: on the main thread
 * it would stall Node-RED for the whole run of a big model. A short-lived worker does it instead.
 */
export async function countModelOpsOffThread(bytes: Uint8Array, inputShapes?: Record<string, number[]>): Promise<OpCount> {
  const answer = await runOneShotWorker<{ count: OpCount }>(path.join(__dirname, 'op-count-worker.js'), { bytes, inputShapes }, 'op-count');
  return answer.count;
}
