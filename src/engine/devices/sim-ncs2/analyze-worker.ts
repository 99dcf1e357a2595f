import { parentPort, workerData } from 'worker_threads';
import { prepareAndAnalyze } from './analyze';
import { enterRuntime, leaveRuntime } from '../cpu/runtime-guard';

const { bytes, prepare, where, runtimeFlags } = workerData as { bytes: Uint8Array; prepare: boolean; where: string; runtimeFlags: Int32Array };
// The analysis runs onnxruntime; an exiting process waits for it as a whole (see runtime-guard).
try {
  enterRuntime(runtimeFlags);
  prepareAndAnalyze(bytes, prepare, where)
    .then(
      (reply) => parentPort!.postMessage(reply, reply.ok && reply.prepared ? [reply.prepared.buffer as ArrayBuffer] : []),
      (err: Error) => parentPort!.postMessage({ ok: false, message: err.message }),
    )
    .finally(() => leaveRuntime(runtimeFlags));
} catch (err) {
  parentPort!.postMessage({ ok: false, message: (err as Error).message });
}
