import { workerData } from 'worker_threads';
import { answerWithinRuntime } from '../../host/one-shot-worker';
import { optimizeModel, type OptimizeOptions } from './optimize';

const { bytes, options, runtimeFlags } = workerData as { bytes: Uint8Array; options: OptimizeOptions; runtimeFlags: Int32Array };
answerWithinRuntime(runtimeFlags, async () => {
  const result = await optimizeModel(bytes, options);
  return { answer: { ok: true, bytes: result.bytes, report: result.report }, transfer: [result.bytes.buffer as ArrayBuffer] };
});
