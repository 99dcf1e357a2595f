import { parentPort, workerData } from 'worker_threads';
import { prepareAndAnalyze } from './analyze';

const { bytes, prepare, where } = workerData as { bytes: Uint8Array; prepare: boolean; where: string };
prepareAndAnalyze(bytes, prepare, where).then(
  (reply) => parentPort!.postMessage(reply, reply.ok && reply.prepared ? [reply.prepared.buffer as ArrayBuffer] : []),
  (err: Error) => parentPort!.postMessage({ ok: false, message: err.message }),
);
