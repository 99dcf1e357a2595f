import { Worker } from 'worker_threads';
import * as path from 'path';
import * as os from 'os';
import { performance } from 'perf_hooks';
import type { Device, DeviceGraph, DeviceInfo, DeviceTelemetry, LoadRequest, Precision, RunRequest, RunResult } from '../device';
import { Decoder, Encoder, decodeResult, encodeTask, type ToWorker, type FromWorker, type TensorRef } from './protocol';
import { DeviceError, ModelLoadError } from '../../errors';
import { readCpuTemperature } from '../../telemetry/thermal';
import { MemoryPool, poolOf, type MemoryPoolStats } from '../../memory/memory-pool';
import { viewOf, bytesPerElement, elementCount, type TensorData } from '../../tensor';

export interface CpuDeviceOptions {
  id?: string;
  /** Worker threads, each with its own onnxruntime sessions. */
  workers?: number;
  /** onnxruntime intra-op threads per worker. */
  threadsPerWorker?: number;
  /** Cap on requests handed to this device at once (the engine keeps fewer for slow models). */
  maxInFlight?: number;
  /** Cores for each worker's intra-op threads (onnxruntime's intra_op_thread_affinities). */
  affinity?: string;
  pool?: MemoryPool;
}

interface Pending {
  resolve(result: RunResult): void;
  reject(error: Error): void;
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  inFlight: Map<number, Pending>;
  outbox: Array<{ seq: number; request: RunRequest }>;
  flushScheduled: boolean;
  alive: boolean;
  /** Requests and loads outstanding; the worker keeps the process alive only while this is > 0. */
  active: number;
  /** The pools each run message's buffers belong to, to return them (or account for a crash). */
  runs: Map<number, Array<{ pool: MemoryPool; size: number }>>;
}

/** Outputs up to this size are copied out of a shared arena; larger ones alone in theirs are handed over. */
const COPY_OUT_BYTES = 64 * 1024;
const align = (n: number) => (n + 63) & ~63;
/** A worker running a long inference gets this long to finish it and exit before it is terminated. */
const WORKER_CLOSE_MS = 5000;

/**
 * The CPU as one device: W worker threads x T onnxruntime intra-op threads. By default
 * W x T equals the cores this process may use, so threads do not oversubscribe them.
 * Tasks go to the worker with the fewest in flight; hand-offs made in one tick travel in one
 * message with their tensors packed in pooled buffers that are moved, not copied, between threads.
 */
export class CpuDevice implements Device {
  readonly id: string;
  readonly kind = 'cpu' as const;
  readonly info: DeviceInfo;
  readonly maxInFlight: number;
  readonly parallelism: number;
  readonly pool: MemoryPool;
  private readonly threads: number;
  private readonly slots: WorkerSlot[] = [];
  private readonly graphs = new Map<string, { request: LoadRequest; graph: DeviceGraph }>();
  private readonly pendingLoads = new Map<string, Array<{ worker: number; resolve(msg: Extract<FromWorker, { op: 'loaded' }>): void; reject(e: Error): void }>>();
  private readonly peaks = new Map<Precision, number>();
  private seq = 1;
  private runId = 1;
  private closed = false;
  private readonly encoder = new Encoder();

  constructor(private readonly options: CpuDeviceOptions = {}) {
    const cores = os.availableParallelism();
    const workers = Math.max(1, options.workers ?? cores);
    this.threads = Math.max(1, options.threadsPerWorker ?? Math.floor(cores / workers));
    this.id = options.id ?? 'cpu';
    this.parallelism = workers;
    this.maxInFlight = options.maxInFlight ?? workers * 64;
    this.pool = options.pool ?? new MemoryPool({ deviceId: this.id });
    this.info = {
      name: `CPU (${workers} worker${workers > 1 ? 's' : ''} x ${this.threads} thread${this.threads > 1 ? 's' : ''})`,
      description: os.cpus()[0]?.model ?? 'unknown CPU',
      simulated: false,
      workers,
      threadsPerWorker: this.threads,
      cores,
    };
    for (let i = 0; i < workers; i++) this.slots.push(this.spawn(i));
  }

  private spawn(index: number): WorkerSlot {
    const worker = new Worker(path.join(__dirname, 'cpu-worker.js'));
    const slot: WorkerSlot = { index, worker, inFlight: new Map(), outbox: [], flushScheduled: false, alive: true, active: 0, runs: new Map() };
    worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg));
    worker.on('error', (err) => this.onWorkerDeath(slot, err));
    worker.on('exit', (code) => this.onWorkerDeath(slot, new Error(`worker exited with code ${code}`)));
    worker.unref();
    return slot;
  }

  // An idle device must not keep a script alive; a busy one must, or the process exits mid-run.
  private hold(slot: WorkerSlot): void {
    if (slot.active++ === 0) slot.worker.ref();
  }

  private letGo(slot: WorkerSlot): void {
    if (--slot.active === 0) slot.worker.unref();
  }

  /** A worker that dies fails its tasks (the scheduler retries them elsewhere) and is replaced. */
  private onWorkerDeath(slot: WorkerSlot, err: Error): void {
    if (!slot.alive) return;
    slot.alive = false;
    const failure = new DeviceError(`${this.id} worker ${slot.index} failed: ${err.message}`, this.id);
    for (const p of slot.inFlight.values()) p.reject(failure);
    slot.inFlight.clear();
    slot.outbox = [];
    for (const owners of slot.runs.values()) for (const { pool, size } of owners) pool.forget(size);
    slot.runs.clear();
    for (const [key, waiters] of this.pendingLoads) {
      for (const w of waiters) if (w.worker === slot.index) w.reject(failure);
      this.pendingLoads.set(key, waiters.filter((w) => w.worker !== slot.index));
    }
    if (this.closed) return;
    const fresh = this.spawn(slot.index);
    this.slots[slot.index] = fresh;
    for (const { request } of this.graphs.values()) this.loadOn(fresh, request).catch(() => undefined);
  }

  private onMessage(slot: WorkerSlot, msg: FromWorker): void {
    if (msg.op === 'results') {
      this.onResults(slot, msg);
      return;
    }
    const waiters = this.pendingLoads.get(msg.key) ?? [];
    this.pendingLoads.set(msg.key, waiters.filter((w) => w.worker !== slot.index));
    for (const w of waiters) {
      if (w.worker !== slot.index) continue;
      this.letGo(slot);
      if (msg.op === 'loaded') w.resolve(msg);
      else w.reject(new ModelLoadError(msg.message));
    }
  }

  private onResults(slot: WorkerSlot, msg: Extract<FromWorker, { op: 'results' }>): void {
    const { buffers, returning } = msg;
    // A large output alone in a returning arena is handed over instead of copied.
    let handedOver: Set<number> | undefined;
    const decoder = new Decoder(msg.results, msg.strings);
    const results = [];
    while (!decoder.done) results.push(decodeResult(decoder));
    for (const r of results) {
      const pending = slot.inFlight.get(r.seq);
      if (!pending) continue;
      slot.inFlight.delete(r.seq);
      this.letGo(slot);
      if (!r.ok) {
        pending.reject(new DeviceError(`${this.id}: ${r.message}`, this.id));
        continue;
      }
      const outputs: Record<string, TensorData> = {};
      for (const ref of r.outputs) {
        const view = viewOf(ref.type, buffers[ref.buffer], ref.byteOffset, ref.length);
        const fromPool = ref.buffer < returning;
        const alone = fromPool && results.length === 1 && r.outputs.length === 1;
        if (!fromPool || (alone && view.byteLength > COPY_OUT_BYTES)) {
          if (fromPool) (handedOver ??= new Set()).add(ref.buffer);
          outputs[ref.name] = { type: ref.type, dims: ref.dims, data: view };
        } else {
          outputs[ref.name] = { type: ref.type, dims: ref.dims, data: view.slice() };
        }
      }
      pending.resolve({ outputs, inferMs: r.inferMs, deviceQueueMs: r.waitMs });
    }
    if (returning) {
      const owners = slot.runs.get(msg.runId) ?? [];
      slot.runs.delete(msg.runId);
      for (let i = 0; i < returning; i++) {
        const pool = owners[i]?.pool ?? this.pool;
        if (handedOver?.has(i)) pool.forget(buffers[i]);
        else pool.release(buffers[i]);
      }
    }
  }

  private post(slot: WorkerSlot, msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(msg, transfer);
  }

  private loadOn(slot: WorkerSlot, request: LoadRequest): Promise<Extract<FromWorker, { op: 'loaded' }>> {
    return new Promise((resolve, reject) => {
      const waiters = this.pendingLoads.get(request.key) ?? [];
      waiters.push({ worker: slot.index, resolve, reject });
      this.pendingLoads.set(request.key, waiters);
      this.hold(slot);
      this.post(slot, { op: 'load', key: request.key, model: request.model, session: request.session, threads: this.threads, affinity: this.options.affinity });
    });
  }

  async load(request: LoadRequest): Promise<DeviceGraph> {
    if (this.closed) throw new DeviceError(`${this.id} is closed`, this.id);
    const existing = this.graphs.get(request.key);
    if (existing) return existing.graph;
    const replies = await Promise.all(this.slots.map((slot) => this.loadOn(slot, request)));
    const first = replies[0];
    const graph: DeviceGraph = { key: request.key, inputNames: first.inputNames, outputNames: first.outputNames, executionProvider: first.executionProvider };
    if (first.fallbackReason) graph.fallbackReason = first.fallbackReason;
    this.graphs.set(request.key, { request, graph });
    return graph;
  }

  async unload(key: string): Promise<void> {
    if (!this.graphs.delete(key)) return;
    // Messages are ordered, so tasks already handed over finish before the session goes.
    for (const slot of this.slots) if (slot.alive) this.post(slot, { op: 'unload', key });
  }

  run(request: RunRequest): Promise<RunResult> {
    if (this.closed) return Promise.reject(new DeviceError(`${this.id} is closed`, this.id));
    let slot: WorkerSlot | undefined;
    for (const s of this.slots) if (s.alive && (!slot || s.inFlight.size < slot.inFlight.size)) slot = s;
    if (!slot) return Promise.reject(new DeviceError(`${this.id} has no live worker`, this.id));
    const target = slot;
    return new Promise<RunResult>((resolve, reject) => {
      const seq = this.seq++;
      const idle = target.inFlight.size === 0;
      target.inFlight.set(seq, { resolve, reject });
      this.hold(target);
      target.outbox.push({ seq, request });
      // An idle worker gets the task at once. A busy one gets the turn's tasks in one message:
      // setImmediate, not a microtask, so results messages handled in this turn of the event loop
      // all add their follow-up tasks before the hand-off goes out.
      if (idle) this.flush(target);
      else if (!target.flushScheduled) {
        target.flushScheduled = true;
        setImmediate(() => {
          target.flushScheduled = false;
          this.flush(target);
        });
      }
    });
  }

  /** Packs the tick's tasks into pooled arenas and hands them to the worker in one message. */
  private flush(slot: WorkerSlot): void {
    const batch = slot.outbox;
    slot.outbox = [];
    if (!slot.alive || batch.length === 0) return;
    let inBytes = 0;
    let outBytes = 0;
    for (const { request } of batch) {
      for (const t of request.inputs) if (!poolOf(t.data)) inBytes += align(t.data.byteLength);
      for (const o of request.outputs ?? []) outBytes += align(elementCount(o.dims) * bytesPerElement(o.type));
    }
    const buffers: ArrayBuffer[] = [];
    const owners: Array<{ pool: MemoryPool; size: number }> = [];
    const inArena = inBytes ? this.pool.acquire(inBytes) : undefined;
    const outArena = outBytes ? this.pool.acquire(outBytes) : undefined;
    for (const arena of [inArena, outArena]) {
      if (!arena) continue;
      buffers.push(arena);
      owners.push({ pool: this.pool, size: arena.byteLength });
    }
    const inIndex = 0;
    const outIndex = inArena ? 1 : 0;
    let inOffset = 0;
    let outOffset = 0;
    const encoder = this.encoder;
    const sentAt = performance.timeOrigin + performance.now();
    for (const { seq, request } of batch) {
      const inputs: TensorRef[] = [];
      for (const t of request.inputs) {
        const data = t.data;
        const owner = poolOf(data);
        if (owner) {
          // Filled by the caller in pooled memory: it moves as it is.
          let index = buffers.indexOf(data.buffer as ArrayBuffer);
          if (index < 0) {
            index = buffers.push(data.buffer as ArrayBuffer) - 1;
            owners.push({ pool: owner, size: data.buffer.byteLength });
          }
          inputs.push({ name: t.name, type: t.type, dims: t.dims, buffer: index, byteOffset: data.byteOffset, length: data.length });
          continue;
        }
        new Uint8Array(inArena!, inOffset, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        inputs.push({ name: t.name, type: t.type, dims: t.dims, buffer: inIndex, byteOffset: inOffset, length: data.length });
        inOffset += align(data.byteLength);
      }
      let outputs: TensorRef[] | undefined;
      if (request.outputs) {
        outputs = [];
        for (const o of request.outputs) {
          const length = elementCount(o.dims);
          outputs.push({ name: o.name, type: o.type, dims: o.dims, buffer: outIndex, byteOffset: outOffset, length });
          outOffset += align(length * bytesPerElement(o.type));
        }
      }
      encodeTask(encoder, { seq, key: request.graphKey, inputs, outputs, sentAt });
    }
    const id = this.runId++;
    slot.runs.set(id, owners);
    this.post(slot, { op: 'run', id, buffers, strings: encoder.strings, tasks: encoder.finish() }, buffers);
    encoder.reset();
  }

  telemetry(): DeviceTelemetry {
    return { temperatureC: readCpuTemperature(), simulated: false };
  }

  setPeakOpsPerSec(precision: Precision, opsPerSec: number): void {
    this.peaks.set(precision, opsPerSec);
  }

  peakOpsPerSec(precision: Precision): number | undefined {
    return this.peaks.get(precision);
  }

  memoryStats(): MemoryPoolStats {
    return this.pool.getStats();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const failure = new DeviceError(`${this.id} was closed while the task ran`, this.id);
    await Promise.all(
      this.slots.map(async (slot) => {
        const wasAlive = slot.alive;
        slot.alive = false;
        for (const p of slot.inFlight.values()) p.reject(failure);
        slot.inFlight.clear();
        if (!wasAlive) return;
        // Ask the worker to release its sessions and exit; terminate only if it does not.
        const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
        slot.worker.ref();
        this.post(slot, { op: 'close' });
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), WORKER_CLOSE_MS)));
        if ((await Promise.race([exited, timeout])) === 'timeout') await slot.worker.terminate();
        clearTimeout(timer);
      }),
    );
    this.graphs.clear();
  }
}
