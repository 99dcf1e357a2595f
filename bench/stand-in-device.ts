import { releasePooled, elementCount } from '../src/engine';
import type { Device, DeviceGraph, LoadRequest, RunRequest, RunResult } from '../src/engine';

/**
 * A device's run() that answers on the main thread's next setImmediate with zeroed outputs: no
 * worker, no hand-over, no inference. Benchmarks use it to separate what the engine and ncs2-infer
 * cost the main thread from what handing work to worker threads costs.
 */
export function answerOnMainThread(request: RunRequest): Promise<RunResult> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const outputs: RunResult['outputs'] = {};
      for (const o of request.outputs ?? []) outputs[o.name] = { type: o.type, dims: o.dims, data: new Float32Array(elementCount(o.dims)) };
      for (const t of request.inputs) releasePooled(t.data);
      resolve({ outputs, inferMs: 0, deviceQueueMs: 0 });
    }),
  );
}

/** A whole device made of answerOnMainThread. */
export class MainThreadStandIn implements Device {
  readonly kind = 'cpu' as const;
  readonly info = { name: 'stand-in', description: 'answers on the main thread, runs nothing', simulated: true };
  readonly maxInFlight = 64;

  constructor(
    readonly id: string,
    readonly parallelism: number,
  ) {}

  async load(request: LoadRequest): Promise<DeviceGraph> {
    return { key: request.key, inputNames: ['input'], outputNames: ['output'], executionProvider: 'none' };
  }
  async unload(): Promise<void> {}
  run(request: RunRequest): Promise<RunResult> {
    return answerOnMainThread(request);
  }
  telemetry() {
    return { simulated: true };
  }
  peakOpsPerSec(): undefined {
    return undefined;
  }
  async close(): Promise<void> {}
}
