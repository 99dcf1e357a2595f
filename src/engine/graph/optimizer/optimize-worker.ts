import { parentPort, workerData } from 'worker_threads';
import { optimizeModel, type OptimizeOptions } from './optimize';

const { bytes, options } = workerData as { bytes: Uint8Array; options: OptimizeOptions };
optimizeModel(bytes, options).then(
  (result) => parentPort!.postMessage({ ok: true, bytes: result.bytes, report: result.report }, [result.bytes.buffer as ArrayBuffer]),
  (err: Error) => parentPort!.postMessage({ ok: false, name: err.name, message: err.message }),
);
