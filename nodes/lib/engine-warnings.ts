import type { InferenceEngine } from '../../src/engine';

/**
 * Passes the engine's 'warning' events that `concerns` picks to `warn`, for as long as a lease
 * holds something in the engine. Returns the unsubscribe: leases call it when they release, so a
 * redeploy leaves no listener behind on the process-wide engine.
 */
export function forwardWarnings(engine: InferenceEngine, concerns: (message: string) => boolean, warn: (message: string) => void): () => void {
  const listener = (warning: Error): void => {
    if (concerns(warning.message)) warn(warning.message);
  };
  engine.on('warning', listener);
  return () => {
    engine.off('warning', listener);
  };
}

// The engine's warnings name their graph first and their device as "on <device id>:"
// ("<graph> runs unbatched: ...", "<graph> on <device>: ...", "<graph> could not be loaded on <device>: ...").

/** Whether the warning is about the engine graph of that name. */
export function namesGraph(message: string, graphName: string): boolean {
  return message.startsWith(`${graphName} `);
}

/** Whether the warning is about the engine device of that id. */
export function namesDevice(message: string, deviceId: string): boolean {
  return message.includes(` on ${deviceId}:`);
}
