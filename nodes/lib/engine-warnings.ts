import type { InferenceEngine, WarningSubject } from '../../src/engine';

/**
 * Passes the engine's 'warning' events that `concerns` picks (by the graph and device ids the
 * engine names with each warning) to `warn`, for as long as a lease holds something in the engine.
 * Returns the unsubscribe: leases call it when they release, so a redeploy leaves no listener
 * behind on the process-wide engine.
 */
export function forwardWarnings(engine: InferenceEngine, concerns: (about: WarningSubject) => boolean, warn: (message: string) => void): () => void {
  const listener = (warning: Error, about: WarningSubject = {}): void => {
    if (concerns(about)) warn(warning.message);
  };
  engine.on('warning', listener);
  return () => {
    engine.off('warning', listener);
  };
}
