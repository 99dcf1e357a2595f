import { parentPort, workerData } from 'worker_threads';
import { countModelOps } from './op-count';

const { bytes, inputShapes } = workerData as { bytes: Uint8Array; inputShapes?: Record<string, number[]> };
countModelOps(bytes, inputShapes).then(
  (count) => parentPort!.postMessage({ ok: true, count: { total: count.total, macs: count.macs, byOpType: count.byOpType, unknownOps: count.unknownOps } }),
  (err: Error) => parentPort!.postMessage({ ok: false, message: err.message }),
);
