import { InferenceEngine, type EngineOptions } from './engine';

let engine: InferenceEngine | undefined;

/**
 * The process-wide engine (one per process: config nodes and scripts share its devices, pools and
 * graph cache). Options apply only when it is first created.
 */
export function getEngine(options: EngineOptions = {}): InferenceEngine {
  if (!engine) engine = new InferenceEngine(options);
  return engine;
}

/** Closes the process-wide engine (tests, shutdown); the next getEngine() makes a new one. */
export async function closeEngine(): Promise<void> {
  const e = engine;
  engine = undefined;
  await e?.close();
}
