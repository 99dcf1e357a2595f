import { workerData } from 'worker_threads';
import { answerWithinRuntime } from '../host/one-shot-worker';
import { countModelOps } from './op-count';

const { bytes, inputShapes, runtimeFlags } = workerData as { bytes: Uint8Array; inputShapes?: Record<string, number[]>; runtimeFlags: Int32Array };
answerWithinRuntime(runtimeFlags, async () => {
  const count = await countModelOps(bytes, inputShapes);
  return { answer: { ok: true, count: { total: count.total, macs: count.macs, byOpType: count.byOpType, unknownOps: count.unknownOps } } };
});
