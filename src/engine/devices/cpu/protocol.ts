import type { SessionSettings } from '../device';
import type { TensorType } from '../../tensor';

/**
 * Messages between a CpuDevice and its worker threads.
 *
 * Tasks handed over in one tick travel in one message: their inputs packed into one pooled
 * "arena" ArrayBuffer and their pre-bound outputs into another, both transferred (moved, not
 * copied); pooled tensors the caller filled directly travel as buffers of their own. Task and
 * result descriptors are numbers in one plain array plus a small string table, because
 * structured-cloning an object per task cost more than the inference of a small model
 * (measured: ~10 us per task for the postMessage alone with object descriptors). A plain array
 * rather than a Float64Array: a typed array over 64 bytes is allocated outside V8's heap, on both
 * sides of every message, at ~3 us each here.
 */
export type ToWorker =
  | { op: 'load'; key: string; model: Uint8Array | string; session: SessionSettings; threads: number; affinity?: string }
  | { op: 'unload'; key: string }
  /** Release every session and exit (terminating a thread inside onnxruntime can abort the process). */
  | { op: 'close' }
  | { op: 'run'; id: number; buffers: ArrayBuffer[]; strings: string[]; tasks: number[] };

export type FromWorker =
  /** `rssGrowthBytes`: how much the process's resident memory grew while this worker created the session. */
  | { op: 'loaded'; key: string; inputNames: string[]; outputNames: string[]; executionProvider: string; fallbackReason?: string; rssGrowthBytes: number }
  | { op: 'loadFailed'; key: string; message: string }
  /** A run message that failed as a whole (not one task's error): its tasks still without results fail. */
  | { op: 'runFailed'; runId: number; message: string }
  /** `returning` leading buffers are the run message's own, coming back (only on its last results). */
  | { op: 'results'; runId: number; returning: number; buffers: ArrayBuffer[]; strings: string[]; results: number[] };

/** A tensor inside one of the message's buffers. */
export interface TensorRef {
  name: string;
  type: TensorType;
  dims: number[];
  buffer: number;
  byteOffset: number;
  length: number;
}

export interface WorkerTask {
  seq: number;
  key: string;
  /** Wall-clock ms (timeOrigin + now) at hand-over, to measure time spent waiting in the worker. */
  sentAt: number;
  inputs: TensorRef[];
  outputs?: TensorRef[];
}

/** Why a task failed: the runtime or the worker ('device'), its input, or its output (non-finite values). */
export type FailureKind = 'device' | 'input' | 'output';
const FAILURE_CODES: Record<FailureKind, number> = { device: 0, input: 2, output: 3 };

export type WorkerResult =
  | { seq: number; ok: true; inferMs: number; waitMs: number; outputs: TensorRef[] }
  | { seq: number; ok: false; inferMs: number; waitMs: number; message: string; kind?: FailureKind };

/**
 * Appends numbers to a plain array and interns strings. Reusable: postMessage copies what it sends
 * before returning, so one encoder per thread is reset after each message.
 */
export class Encoder {
  private readonly data: number[] = [];
  readonly strings: string[] = [];
  private readonly index = new Map<string, number>();

  num(v: number): void {
    this.data.push(v);
  }

  str(s: string): void {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.strings.push(s) - 1;
      this.index.set(s, i);
    }
    this.num(i);
  }

  tensors(refs: TensorRef[] | undefined): void {
    if (!refs) return this.num(-1);
    this.num(refs.length);
    for (const r of refs) {
      this.str(r.name);
      this.str(r.type);
      this.num(r.dims.length);
      for (const d of r.dims) this.num(d);
      this.num(r.buffer);
      this.num(r.byteOffset);
      this.num(r.length);
    }
  }

  /** The numbers so far (the encoder's own array: post it before reset()). */
  finish(): number[] {
    return this.data;
  }

  reset(): void {
    this.data.length = 0;
    this.strings.length = 0;
    this.index.clear();
  }
}

export class Decoder {
  private pos = 0;
  constructor(private readonly data: ArrayLike<number>, private readonly strings: string[]) {}

  get done(): boolean {
    return this.pos >= this.data.length;
  }

  num(): number {
    return this.data[this.pos++];
  }

  str(): string {
    return this.strings[this.data[this.pos++]];
  }

  tensors(): TensorRef[] | undefined {
    const n = this.num();
    if (n < 0) return undefined;
    const refs: TensorRef[] = [];
    for (let i = 0; i < n; i++) {
      const name = this.str();
      const type = this.str() as TensorType;
      const rank = this.num();
      const dims: number[] = [];
      for (let d = 0; d < rank; d++) dims.push(this.num());
      refs.push({ name, type, dims, buffer: this.num(), byteOffset: this.num(), length: this.num() });
    }
    return refs;
  }
}

export function encodeTask(e: Encoder, t: WorkerTask): void {
  e.num(t.seq);
  e.str(t.key);
  e.num(t.sentAt);
  e.tensors(t.inputs);
  e.tensors(t.outputs);
}

export function decodeTask(d: Decoder): WorkerTask {
  return { seq: d.num(), key: d.str(), sentAt: d.num(), inputs: d.tensors() ?? [], outputs: d.tensors() };
}

export function encodeResult(e: Encoder, r: WorkerResult): void {
  e.num(r.seq);
  e.num(r.ok ? 1 : FAILURE_CODES[r.kind ?? 'device']);
  e.num(r.inferMs);
  e.num(r.waitMs);
  if (r.ok) e.tensors(r.outputs);
  else e.str(r.message);
}

export function decodeResult(d: Decoder): WorkerResult {
  const seq = d.num();
  const code = d.num();
  const inferMs = d.num();
  const waitMs = d.num();
  if (code === 1) return { seq, ok: true, inferMs, waitMs, outputs: d.tensors() ?? [] };
  const kind = code === FAILURE_CODES.input ? 'input' : code === FAILURE_CODES.output ? 'output' : 'device';
  return { seq, ok: false, inferMs, waitMs, message: d.str(), kind };
}
