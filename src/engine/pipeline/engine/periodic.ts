/**
 * Timer and immediate callbacks that cannot throw: an exception escaping one would end the host
 * process (Node-RED with it), so each reports through `onError` instead.
 */
/** What a warning is about, so listeners route it by id instead of reading its wording. */
export interface WarningSubject {
  /** Engine graph id. */
  graph?: string;
  /** The graph's name (the name its first loader gave). */
  graphName?: string;
  /** Engine device id. */
  device?: string;
}

export type ErrorSink = (error: Error, about?: WarningSubject) => void;

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** `fn` wrapped so that a throw (or a rejected promise it returns) goes to `onError`. */
export function guarded<A extends unknown[]>(fn: (...args: A) => unknown, onError: ErrorSink): (...args: A) => void {
  return (...args: A) => {
    try {
      const result = fn(...args);
      if (result instanceof Promise) result.catch((err: unknown) => onError(asError(err)));
    } catch (err) {
      onError(asError(err));
    }
  };
}

/**
 * Named jobs that run every `intervalMs` on one unref'd timer (it never keeps the process alive).
 * Each job is added by the part that owns it; one failing job is reported and the others still run.
 */
export class PeriodicJobs {
  private readonly jobs: Array<{ name: string; run: () => void }> = [];
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs: number, private readonly onError: (jobName: string, error: Error) => void) {
    this.timer = setInterval(() => {
      for (const job of this.jobs) job.run();
    }, intervalMs);
    this.timer.unref();
  }

  add(name: string, run: () => unknown): void {
    this.jobs.push({ name, run: guarded(run, (err) => this.onError(name, err)) });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
