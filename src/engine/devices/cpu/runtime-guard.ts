/**
 * Keeps the process from aborting when it exits while a worker is inside onnxruntime.
 *
 * Node stops worker threads when the process exits (process.exit(), an uncaught exception, or the
 * event loop running dry). A worker stopped while a native onnxruntime call runs aborts the whole
 * process when that call returns: the binding's N-API calls fail on the stopping thread and
 * throw a C++ exception nobody catches ("terminate called after throwing an instance of
 * 'Napi::Error'", exit code 134). Measured here: process.exit() 300 ms into a 3 s run gives 134.
 *
 * So each worker shares two flags with the main thread: IN_RUNTIME, which the worker raises around
 * every native call, and STOP, which the main thread raises on exit. On 'exit' the main thread sets
 * STOP and waits (Atomics.wait) until no worker is inside the runtime; a worker that sees STOP
 * before a native call does not make it. Raising IN_RUNTIME before reading STOP, and STOP before
 * reading IN_RUNTIME, means one of the two sides always sees the other (both are sequentially
 * consistent atomics).
 */
import { performance } from 'perf_hooks';

const IN_RUNTIME = 0;
const STOP = 1;

/** How long an exiting process waits for runs already inside onnxruntime to return. */
export const EXIT_WAIT_MS = 120_000;

const live = new Set<Int32Array>();
let installed = false;

function waitForRuntimeCalls(): void {
  for (const flags of live) Atomics.store(flags, STOP, 1);
  const deadline = performance.now() + EXIT_WAIT_MS;
  for (const flags of live) {
    while (Atomics.load(flags, IN_RUNTIME) === 1) {
      const left = deadline - performance.now();
      if (left <= 0) {
        process.stderr.write(`cpu device: a worker was still inside onnxruntime ${EXIT_WAIT_MS} ms after exit began; the process may abort\n`);
        return;
      }
      Atomics.wait(flags, IN_RUNTIME, 1, Math.min(left, 1000));
    }
  }
}

/** Main thread: the flags for a new worker (registered until forgetRuntimeFlags). */
export function createRuntimeFlags(): Int32Array {
  const flags = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  live.add(flags);
  if (!installed) {
    installed = true;
    process.on('exit', waitForRuntimeCalls);
  }
  return flags;
}

/** Main thread: the worker has exited; nothing to wait for. */
export function forgetRuntimeFlags(flags: Int32Array): void {
  live.delete(flags);
}

/** Main thread: whether the worker is inside a native call now. */
export function inRuntime(flags: Int32Array): boolean {
  return Atomics.load(flags, IN_RUNTIME) === 1;
}

/** Thrown in a worker instead of entering onnxruntime while the process exits. */
export class ProcessExitingError extends Error {
  constructor() {
    super('the process is exiting; onnxruntime was not called');
  }
}

/** Worker: marks the start of native work, or throws ProcessExitingError when the process is exiting. */
export function enterRuntime(flags: Int32Array): void {
  Atomics.store(flags, IN_RUNTIME, 1);
  if (Atomics.load(flags, STOP) === 1) {
    leaveRuntime(flags);
    throw new ProcessExitingError();
  }
}

/** Worker: the native work is over; an exiting process may stop this thread now. */
export function leaveRuntime(flags: Int32Array): void {
  Atomics.store(flags, IN_RUNTIME, 0);
  Atomics.notify(flags, IN_RUNTIME);
}

/** Worker: runs a native call unless the process is exiting. */
export function inRuntimeCall<T>(flags: Int32Array | undefined, call: () => T): T {
  if (!flags) return call();
  enterRuntime(flags);
  try {
    return call();
  } finally {
    leaveRuntime(flags);
  }
}
