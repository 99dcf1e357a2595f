import { InferenceEngine, type EngineOptions } from './engine';
import { bindStickRegistry } from '../devices/usb/engine-binding';
import { getStickRegistry } from '../devices/usb/registry';

let engine: InferenceEngine | undefined;
let unbindSticks: (() => void) | undefined;

/**
 * The process-wide engine (one per process: config nodes and scripts share its devices, pools and
 * graph cache). Options apply only when it is first created.
 */
export function getEngine(options: EngineOptions = {}): InferenceEngine {
  if (!engine) {
    engine = new InferenceEngine(options);
    // an unplugged stick leaves the engine; its running tasks are retried on the other devices
    unbindSticks = bindStickRegistry(getStickRegistry(), engine);
  }
  return engine;
}

/** Closes the process-wide engine (tests, shutdown); the next getEngine() makes a new one. */
export async function closeEngine(): Promise<void> {
  const e = engine;
  engine = undefined;
  unbindSticks?.();
  unbindSticks = undefined;
  await e?.close();
}
