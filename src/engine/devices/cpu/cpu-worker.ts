/**
 * Worker thread of a CpuDevice: owns onnxruntime sessions and runs them synchronously here, so
 * the main thread (Node-RED's event loop) never blocks on an inference.
 */
import { parentPort, workerData } from 'worker_threads';
import { performance } from 'perf_hooks';
import * as ort from 'onnxruntime-node';
import { Decoder, Encoder, decodeTask, encodeResult, type ToWorker, type FromWorker, type WorkerResult, type TensorRef } from './protocol';
import type { SessionSettings } from '../device';
import { viewOf } from '../../tensor';
import { lowerThisThread } from '../../host/thread-priority';
import { inRuntimeCall } from './runtime-guard';
import { nonFiniteProblem } from '../non-finite';

/** Shared with the main thread so an exiting process waits for native calls (see runtime-guard). */
const runtimeFlags = (workerData as { runtimeFlags?: Int32Array } | null)?.runtimeFlags;

type Fetches = Record<string, ort.Tensor | null>;
interface SyncSession {
  /** NaN and ±Infinity pass through instead of failing the task (SessionSettings.nonFinite 'allow'). */
  allowNonFinite?: boolean;
  inputNames: string[];
  outputNames: string[];
  run(feeds: Record<string, ort.Tensor>, fetches: Fetches): Record<string, ort.Tensor>;
  release(): void;
}

interface NativeSession {
  loadModel(...args: unknown[]): void;
  run(feeds: Record<string, ort.Tensor>, fetches: Fetches, options: object): Record<string, ort.Tensor>;
  inputMetadata: Array<{ name: string }>;
  outputMetadata: Array<{ name: string }>;
  dispose?(): void;
}

/**
 * onnxruntime-node's public run() defers every call through setImmediate and a promise; its
 * native session runs synchronously. In a worker, blocking is what we want, and calling the native
 * run directly saves that hop per request (measured: ~10% for a 784-128-10 MLP). The binding is
 * internal API: package.json pins onnxruntime-node exactly, and a missing binding is a clear error.
 */
function loadNativeBinding(): { InferenceSession: new () => NativeSession } | undefined {
  try {
    const mod = require('onnxruntime-node/dist/binding.js') as { binding?: { InferenceSession?: new () => NativeSession }; initOrt?: () => void };
    if (typeof mod.initOrt !== 'function' || typeof mod.binding?.InferenceSession !== 'function') return undefined;
    inRuntimeCall(runtimeFlags, () => mod.initOrt!());
    return mod.binding as { InferenceSession: new () => NativeSession };
  } catch {
    return undefined;
  }
}
const native = loadNativeBinding();

/**
 * Inference yields to Node-RED's main thread when both want a core (see host/thread-priority): set
 * before any session exists, so the onnxruntime threads this worker starts inherit it.
 */
try {
  lowerThisThread();
} catch {
  // A bad NCS2_BACKGROUND_PRIORITY: the engine refuses it by name; a worker started without one
  // must still run (a throw here would end it, and its device would start another, forever).
  lowerThisThread('nice');
}

function ortOptions(session: SessionSettings, threads: number, providers: string[], affinity?: string): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: session.graphOptimizationLevel ?? 'all',
    executionProviders: providers,
  };
  // onnxruntime spawns threads-1 intra-op threads; their placement is one core list per thread.
  if (affinity) options.extra = { session: { intra_op_thread_affinities: affinity } };
  return options;
}

function openSession(model: Uint8Array | string, options: ort.InferenceSession.SessionOptions): SyncSession {
  if (!native) throw new Error('onnxruntime-node native binding not found (dist/binding.js); install the onnxruntime-node version package.json pins');
  const binding = native;
  return inRuntimeCall(runtimeFlags, () => {
    const s = new binding.InferenceSession();
    if (typeof model === 'string') s.loadModel(model, options);
    else s.loadModel(model.buffer, model.byteOffset, model.byteLength, options);
    return {
      inputNames: s.inputMetadata.map((m) => m.name),
      outputNames: s.outputMetadata.map((m) => m.name),
      run: (feeds, fetches) => inRuntimeCall(runtimeFlags, () => s.run(feeds, fetches, {})),
      release: () => {
        try {
          inRuntimeCall(runtimeFlags, () => s.dispose?.());
        } catch {
          // Only when the process is exiting, which frees the session anyway.
        }
      },
    };
  });
}

/** Tries the requested providers; a provider that throws at creation (cuda, tensorrt, webgpu here) falls back to cpu. */
function openWithFallback(msg: Extract<ToWorker, { op: 'load' }>): { session: SyncSession; provider: string; fallbackReason?: string } {
  const wanted = (msg.session.executionProviders ?? ['cpu']).filter((p) => p !== 'cpu');
  let fallbackReason: string | undefined;
  for (const provider of wanted) {
    try {
      const session = openSession(msg.model, ortOptions(msg.session, msg.threads, [provider, 'cpu'], msg.affinity));
      return { session, provider };
    } catch (err) {
      fallbackReason = `${provider} unavailable (${(err as Error).message.split('\n')[0]}); using cpu`;
    }
  }
  const session = openSession(msg.model, ortOptions(msg.session, msg.threads, ['cpu'], msg.affinity));
  return { session, provider: 'cpu', fallbackReason };
}

const sessions = new Map<string, SyncSession>();
const port = parentPort;
if (!port) throw new Error('cpu-worker must run in a worker thread');

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

function view(ref: TensorRef, buffers: ArrayBuffer[]): ort.Tensor {
  const data = viewOf(ref.type, buffers[ref.buffer], ref.byteOffset, ref.length);
  return new ort.Tensor(ref.type as ort.Tensor.Type, data as ort.Tensor.DataType, ref.dims);
}

/**
 * Runs one message's tasks. Results go back in one message per batch, but are never held longer
 * than FLUSH_AFTER_MS, so a big model's results are not delayed behind its batch-mates. The input
 * and output arenas go back with the last flush (earlier flushes only carry descriptors and any
 * runtime-allocated outputs).
 */
const FLUSH_AFTER_MS = 0.5;
const encoder = new Encoder();

function runBatch(runId: number, buffers: ArrayBuffer[], strings: string[], encoded: number[]): void {
  const decoder = new Decoder(encoded, strings);
  const tasks = [];
  while (!decoder.done) tasks.push(decodeTask(decoder));
  let results: WorkerResult[] = [];
  let extra: ArrayBuffer[] = [];
  let since = performance.now();
  const flush = (last: boolean) => {
    if (!last) {
      // The arenas go back only with the last flush, so outputs bound in them are copied out
      // here. They are small: a model slow enough to flush early runs few tasks per message.
      for (const r of results) {
        if (!r.ok) continue;
        for (const ref of r.outputs) {
          if (ref.buffer >= buffers.length) continue;
          extra.push(viewOf(ref.type, buffers[ref.buffer], ref.byteOffset, ref.length).slice().buffer as ArrayBuffer);
          ref.buffer = buffers.length + extra.length - 1;
          ref.byteOffset = 0;
        }
      }
    }
    // Buffers of `extra` are numbered as if they followed the arenas; renumber when they travel alone.
    const shipped = last ? [...buffers, ...extra] : extra;
    if (!last) for (const r of results) if (r.ok) for (const ref of r.outputs) ref.buffer -= buffers.length;
    for (const r of results) encodeResult(encoder, r);
    post({ op: 'results', runId, returning: last ? buffers.length : 0, buffers: shipped, strings: encoder.strings, results: encoder.finish() }, shipped);
    encoder.reset();
    results = [];
    extra = [];
    since = performance.now();
  };
  for (let i = 0; i < tasks.length; i++) {
    const task = tasks[i];
    const waitMs = Math.max(0, performance.timeOrigin + performance.now() - task.sentAt);
    const session = sessions.get(task.key);
    if (!session) {
      results.push({ seq: task.seq, ok: false, message: `graph ${task.key.slice(0, 12)} is not loaded on this worker`, inferMs: 0, waitMs });
    } else {
      try {
        const feeds: Record<string, ort.Tensor> = {};
        for (const ref of task.inputs) feeds[ref.name] = view(ref, buffers);
        const badInput = session.allowNonFinite ? undefined : firstProblem('input', feeds);
        if (badInput) {
          results.push({ seq: task.seq, ok: false, kind: 'input', message: badInput, inferMs: 0, waitMs });
          continue;
        }
        const fetches: Fetches = {};
        for (const name of session.outputNames) fetches[name] = null;
        for (const ref of task.outputs ?? []) fetches[ref.name] = view(ref, buffers);
        const start = performance.now();
        const produced = session.run(feeds, fetches);
        const inferMs = performance.now() - start;
        const badOutput = session.allowNonFinite ? undefined : firstProblem('output', produced);
        if (badOutput) {
          results.push({ seq: task.seq, ok: false, kind: 'output', message: badOutput, inferMs, waitMs });
          continue;
        }
        const outputs: TensorRef[] = [];
        for (const name of session.outputNames) {
          const bound = task.outputs?.find((r) => r.name === name);
          const t = produced[name];
          if (bound) {
            outputs.push({ ...bound, dims: [...t.dims] });
            continue;
          }
          // The runtime allocated this one (data-dependent shape): ship its buffer as it is.
          const data = t.data as unknown as ArrayBufferView & { length: number };
          let buffer = data.buffer as ArrayBuffer;
          let byteOffset = data.byteOffset;
          if (byteOffset !== 0 || data.byteLength !== buffer.byteLength) {
            buffer = buffer.slice(byteOffset, byteOffset + data.byteLength);
            byteOffset = 0;
          }
          outputs.push({ name, type: t.type as TensorRef['type'], dims: [...t.dims], buffer: buffers.length + extra.length, byteOffset, length: data.length });
          extra.push(buffer);
        }
        results.push({ seq: task.seq, ok: true, outputs, inferMs, waitMs });
      } catch (err) {
        results.push({ seq: task.seq, ok: false, message: (err as Error).message, inferMs: 0, waitMs });
      }
    }
    if (i < tasks.length - 1 && performance.now() - since >= FLUSH_AFTER_MS) flush(false);
  }
  flush(true);
}

function firstProblem(role: 'input' | 'output', tensors: Record<string, ort.Tensor>): string | undefined {
  for (const name in tensors) {
    const t = tensors[name];
    const problem = nonFiniteProblem(role, name, t.type as TensorRef['type'], t.data as ArrayLike<number>);
    if (problem) return problem;
  }
  return undefined;
}

const pendingRuns: Array<Extract<ToWorker, { op: 'run' }>> = [];

function runPending(): void {
  const runs = pendingRuns.splice(0);
  for (const run of runs) {
    try {
      runBatch(run.id, run.buffers, run.strings, run.tasks);
    } catch (err) {
      encoder.reset();
      post({ op: 'runFailed', runId: run.id, message: (err as Error).message });
    }
  }
}

port.on('message', (msg: ToWorker) => {
  switch (msg.op) {
    case 'run':
      // Run messages that arrived together are run together, so their results share a message.
      pendingRuns.push(msg);
      if (pendingRuns.length === 1) setImmediate(runPending);
      break;
    case 'load':
      try {
        const rssBefore = process.memoryUsage.rss();
        const { session, provider, fallbackReason } = openWithFallback(msg);
        const rssGrowthBytes = Math.max(0, process.memoryUsage.rss() - rssBefore);
        session.allowNonFinite = msg.session.nonFinite === 'allow';
        sessions.get(msg.key)?.release();
        sessions.set(msg.key, session);
        post({ op: 'loaded', key: msg.key, inputNames: session.inputNames, outputNames: session.outputNames, executionProvider: provider, fallbackReason, rssGrowthBytes });
      } catch (err) {
        post({ op: 'loadFailed', key: msg.key, message: (err as Error).message });
      }
      break;
    case 'close':
      pendingRuns.length = 0;
      for (const session of sessions.values()) session.release();
      sessions.clear();
      port.close();
      break;
    case 'unload':
      sessions.get(msg.key)?.release();
      sessions.delete(msg.key);
      break;
  }
});
