import { Worker } from 'worker_threads';
import { promises as fs } from 'fs';
import * as path from 'path';
import * as os from 'os';
import { performance } from 'perf_hooks';
import type { Device, DeviceGraph, DeviceInfo, DeviceTelemetry, LoadRequest, Precision, RunRequest, RunResult } from '../device';
import { Decoder, Encoder, decodeResult, encodeTask, type ToWorker, type FromWorker, type TensorRef } from './protocol';
import { DeviceError, EngineError, InputError, ModelLoadError } from '../../errors';
import { readCpuTemperature } from '../../telemetry/thermal';
import { MemoryPool, poolOf, type GraphMemoryStats, type MemoryPoolStats } from '../../memory/memory-pool';
import { viewOf, bytesPerElement, elementCount, type TensorData } from '../../tensor';
import { createRuntimeFlags, forgetRuntimeFlags } from './runtime-guard';

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
  /**
   * Largest input or output tensor a request may carry, in bytes (default MAX_TENSOR_BYTES, 1 GiB).
   * A larger one fails its own task with an InputError before any memory is taken for it.
   */
  maxTensorBytes?: number;
  /**
   * Heap limit of each worker thread in MB (worker_threads resourceLimits.maxOldGenerationSizeMb;
   * default: Node's). A worker that reaches it fails its tasks with a DeviceError and is replaced.
   */
  workerHeapMb?: number;
  /**
   * Memory the loaded graphs may take, in MB (default: half the host's memory). A load that would
   * pass it is refused with a ModelLoadError; each graph counts, per worker, the larger of its model
   * size and the resident-memory growth measured while the worker created its session.
   */
  memoryBudgetMb?: number;
}

/** Default cap on one tensor: a request's tensors travel in one ArrayBuffer, and the host's memory is shared. */
export const MAX_TENSOR_BYTES = 1024 * 1024 * 1024;
/** Tasks handed over together share an arena up to this size; more go in further messages. */
const MAX_ARENA_BYTES = 2 * MAX_TENSOR_BYTES;

interface Pending {
  resolve(result: RunResult): void;
  reject(error: Error): void;
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  /** Shared with the worker so the process waits for its native calls on exit (runtime-guard). */
  runtimeFlags: Int32Array;
  /** Deaths in a row without a message from the worker (a worker that cannot start is not respawned forever). */
  failedStarts: number;
  inFlight: Map<number, Pending>;
  outbox: Array<{ seq: number; request: RunRequest }>;
  flushScheduled: boolean;
  alive: boolean;
  /** Requests and loads outstanding; the worker keeps the process alive only while this is > 0. */
  active: number;
  /** Each run message's tasks, and the pools its buffers belong to (to return them, or account for a crash). */
  runs: Map<number, { seqs: number[]; owners: Array<{ pool: MemoryPool; size: number }> }>;
}

/** Outputs up to this size are copied out of a shared arena; larger ones alone in theirs are handed over. */
const COPY_OUT_BYTES = 64 * 1024;
/** Rounds up to 64 bytes; plain arithmetic, since a bitwise mask overflows at 2 GiB. */
export const align64 = (n: number): number => Math.ceil(n / 64) * 64;
/**
 * A closing device waits this long for each worker to exit. A worker still inside a long inference
 * is then left to finish on its own (unref'd, its results discarded): terminating a thread inside
 * onnxruntime aborts the whole process.
 */
const WORKER_CLOSE_MS = 1000;
/** A worker slot that dies this many times in a row before saying anything is not started again. */
const MAX_FAILED_STARTS = 3;

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
  private readonly maxTensorBytes: number;
  private readonly slots: WorkerSlot[] = [];
  private readonly graphs = new Map<string, { request: LoadRequest; graph: DeviceGraph }>();
  /** Requests handed to run() and not settled yet, per graph: a graph is not unloaded under them. */
  private readonly runsPerGraph = new Map<string, number>();
  /** Graphs unloaded while requests still ran on them: their sessions go when the last one settles. */
  private readonly unloading = new Map<string, { request: LoadRequest; graph: DeviceGraph }>();
  /** Memory per graph key (loading, loaded or unloading): the model's size and each worker's measured growth. */
  private readonly graphMemory = new Map<string, { modelBytes: number; measured: Map<number, number> }>();
  private readonly memoryBudgetBytes: number;
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
    this.maxTensorBytes = options.maxTensorBytes ?? MAX_TENSOR_BYTES;
    this.memoryBudgetBytes = Math.round((options.memoryBudgetMb ?? os.totalmem() / 2 / 2 ** 20) * 2 ** 20);
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

  private spawn(index: number, failedStarts = 0): WorkerSlot {
    const runtimeFlags = createRuntimeFlags();
    const heapMb = this.options.workerHeapMb;
    const worker = new Worker(path.join(__dirname, 'cpu-worker.js'), {
      workerData: { runtimeFlags },
      resourceLimits: heapMb ? { maxOldGenerationSizeMb: heapMb } : undefined,
    });
    const slot: WorkerSlot = { index, worker, runtimeFlags, failedStarts, inFlight: new Map(), outbox: [], flushScheduled: false, alive: true, active: 0, runs: new Map() };
    worker.on('message', (msg: FromWorker) => {
      slot.failedStarts = 0;
      this.onMessage(slot, msg);
    });
    worker.on('error', (err) => this.onWorkerDeath(slot, this.describeDeath(err)));
    worker.on('exit', (code) => {
      forgetRuntimeFlags(runtimeFlags);
      this.onWorkerDeath(slot, `it exited with code ${code}`);
    });
    worker.unref();
    return slot;
  }

  private describeDeath(err: Error & { code?: string }): string {
    if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
      const limit = this.options.workerHeapMb ? `its heap limit of ${this.options.workerHeapMb} MB` : 'its heap limit';
      return `it ran out of memory (${limit}; give the workers a larger heap or send smaller requests)`;
    }
    return err.message;
  }

  // An idle device must not keep a script alive; a busy one must, or the process exits mid-run.
  private hold(slot: WorkerSlot): void {
    if (slot.active++ === 0) slot.worker.ref();
  }

  private letGo(slot: WorkerSlot): void {
    if (--slot.active === 0) slot.worker.unref();
  }

  /** A worker that dies fails its tasks (the scheduler retries them elsewhere) and is replaced. */
  private onWorkerDeath(slot: WorkerSlot, reason: string): void {
    if (!slot.alive) return;
    this.failSlot(slot, new DeviceError(`${this.id} worker ${slot.index} failed: ${reason}`, this.id));
    if (this.closed) return;
    const failedStarts = slot.failedStarts + 1;
    if (failedStarts >= MAX_FAILED_STARTS) return; // run() then says the device has no live worker
    const fresh = this.spawn(slot.index, failedStarts);
    this.slots[slot.index] = fresh;
    for (const { request } of this.graphs.values()) this.loadOn(fresh, request).catch(() => undefined);
    for (const { request } of this.unloading.values()) this.loadOn(fresh, request).catch(() => undefined);
  }

  /** Takes a worker out of service: its requests and loads fail with `failure`, and it keeps nothing alive. */
  private failSlot(slot: WorkerSlot, failure: DeviceError): void {
    slot.alive = false;
    for (const p of slot.inFlight.values()) p.reject(failure);
    slot.inFlight.clear();
    slot.outbox = [];
    for (const { owners } of slot.runs.values()) for (const { pool, size } of owners) pool.forget(size);
    slot.runs.clear();
    for (const [key, waiters] of this.pendingLoads) {
      for (const w of waiters) if (w.worker === slot.index) w.reject(failure);
      this.pendingLoads.set(key, waiters.filter((w) => w.worker !== slot.index));
    }
    slot.active = 0;
    slot.worker.unref();
  }

  private onMessage(slot: WorkerSlot, msg: FromWorker): void {
    if (!slot.alive) return; // a retired worker finishing a run: its tasks already failed
    if (msg.op === 'results') {
      this.onResults(slot, msg);
      return;
    }
    if (msg.op === 'runFailed') {
      this.onRunFailed(slot, msg);
      return;
    }
    const waiters = this.pendingLoads.get(msg.key) ?? [];
    this.pendingLoads.set(msg.key, waiters.filter((w) => w.worker !== slot.index));
    for (const w of waiters) {
      if (w.worker !== slot.index) continue;
      this.letGo(slot);
      if (msg.op === 'loaded') {
        this.graphMemory.get(msg.key)?.measured.set(slot.index, msg.rssGrowthBytes);
        w.resolve(msg);
      }
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
        // Only a device failure may succeed elsewhere (the engine retries DeviceErrors).
        if (r.kind === 'input') pending.reject(new InputError(`${this.id}: ${r.message}`));
        else if (r.kind === 'output') pending.reject(new EngineError(`${this.id}: ${r.message}`, 'OUTPUT_NOT_FINITE'));
        else pending.reject(new DeviceError(`${this.id}: ${r.message}`, this.id));
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
      const owners = slot.runs.get(msg.runId)?.owners ?? [];
      slot.runs.delete(msg.runId);
      for (let i = 0; i < returning; i++) {
        const pool = owners[i]?.pool ?? this.pool;
        if (handedOver?.has(i)) pool.forget(buffers[i]);
        else pool.release(buffers[i]);
      }
    }
  }

  /** The worker could not finish a run message: its tasks without results fail; its buffers are lost. */
  private onRunFailed(slot: WorkerSlot, msg: Extract<FromWorker, { op: 'runFailed' }>): void {
    const run = slot.runs.get(msg.runId);
    if (!run) return;
    slot.runs.delete(msg.runId);
    for (const { pool, size } of run.owners) pool.forget(size);
    const failure = new DeviceError(`${this.id} worker ${slot.index} could not run the request: ${msg.message}`, this.id);
    for (const seq of run.seqs) {
      const pending = slot.inFlight.get(seq);
      if (!pending) continue;
      slot.inFlight.delete(seq);
      this.letGo(slot);
      pending.reject(failure);
    }
  }

  private post(slot: WorkerSlot, msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(msg, transfer);
  }

  private loadOn(slot: WorkerSlot, request: LoadRequest): Promise<Extract<FromWorker, { op: 'loaded' }>> {
    if (this.closed) return Promise.reject(new DeviceError(`${this.id} was closed while the graph loaded`, this.id));
    if (!slot.alive) return Promise.reject(new DeviceError(`${this.id} worker ${slot.index} is not running (it failed ${MAX_FAILED_STARTS} times in a row)`, this.id));
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
    // Unloaded while still running: its sessions are still there, so it is back at once.
    const kept = this.unloading.get(request.key);
    if (kept) {
      this.unloading.delete(request.key);
      this.graphs.set(request.key, kept);
      return kept.graph;
    }
    await this.reserveMemory(request);
    const replies: Array<Extract<FromWorker, { op: 'loaded' }>> = [];
    try {
      // One worker at a time, so each measures only its own session's memory.
      for (const slot of this.slots) replies.push(await this.loadOn(slot, request));
    } catch (err) {
      this.graphMemory.delete(request.key);
      throw err;
    }
    const first = replies[0];
    const graph: DeviceGraph = { key: request.key, inputNames: first.inputNames, outputNames: first.outputNames, executionProvider: first.executionProvider };
    if (first.fallbackReason) graph.fallbackReason = first.fallbackReason;
    this.graphs.set(request.key, { request, graph });
    return graph;
  }

  /**
   * A graph with requests in run() (even ones not yet handed to a worker) keeps its sessions until
   * the last of them settles; a load in the meantime takes it back without loading anything.
   */
  async unload(key: string): Promise<void> {
    const entry = this.graphs.get(key);
    if (!entry) return;
    this.graphs.delete(key);
    if (this.runsPerGraph.has(key)) this.unloading.set(key, entry);
    else this.unloadSessions(key);
  }

  /** Counts a graph's model bytes against the budget before loading it, or refuses it. */
  private async reserveMemory(request: LoadRequest): Promise<void> {
    let modelBytes: number;
    try {
      modelBytes = typeof request.model === 'string' ? (await fs.stat(request.model)).size : request.model.byteLength;
    } catch (err) {
      throw new ModelLoadError(`${this.id}: cannot read ${request.model}: ${(err as Error).message}`);
    }
    const needed = modelBytes * this.slots.length;
    const taken = this.graphMemoryStats().totalBytes;
    if (taken + needed > this.memoryBudgetBytes) {
      const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`;
      throw new ModelLoadError(
        `${this.id}: loading this model needs at least ${mb(needed)} (${mb(modelBytes)} per worker x ${this.slots.length}), and the ${this.graphMemory.size} graph(s) loaded here take ${mb(taken)} of the device's ${mb(this.memoryBudgetBytes)} memory budget: use fewer models on this device or give it a larger budget`,
      );
    }
    this.graphMemory.set(request.key, { modelBytes, measured: new Map() });
  }

  private graphMemoryStats(): GraphMemoryStats {
    const byGraph: GraphMemoryStats['byGraph'] = {};
    let totalBytes = 0;
    const copies = this.slots.length;
    for (const [key, { modelBytes, measured }] of this.graphMemory) {
      let measuredBytes = 0;
      let bytes = 0;
      for (let w = 0; w < copies; w++) {
        const growth = measured.get(w) ?? 0;
        measuredBytes += growth;
        bytes += Math.max(modelBytes, growth);
      }
      byGraph[key] = { modelBytes, copies, measuredBytes, bytes };
      totalBytes += bytes;
    }
    return { byGraph, totalBytes, budgetBytes: this.memoryBudgetBytes };
  }

  private unloadSessions(key: string): void {
    this.graphMemory.delete(key);
    // Messages are ordered, so tasks already handed over finish before the session goes.
    for (const slot of this.slots) if (slot.alive) this.post(slot, { op: 'unload', key });
  }

  private runStarted(key: string): void {
    this.runsPerGraph.set(key, (this.runsPerGraph.get(key) ?? 0) + 1);
  }

  private runSettled(key: string): void {
    const left = (this.runsPerGraph.get(key) ?? 1) - 1;
    if (left > 0) {
      this.runsPerGraph.set(key, left);
      return;
    }
    this.runsPerGraph.delete(key);
    if (this.unloading.delete(key)) this.unloadSessions(key);
  }

  /** Why a request cannot be handed over at all (too large), or undefined. */
  private refusal(request: RunRequest): InputError | undefined {
    const limit = this.maxTensorBytes;
    const tooLarge = (what: string, name: string, bytes: number) =>
      new InputError(`${this.id}: ${what} '${name}' is ${bytes} bytes; the largest tensor this device takes is ${limit} bytes: send fewer or smaller samples per request`);
    for (const t of request.inputs) {
      // Its data is what gets copied (the engine has checked it against the dims).
      if (t.data.byteLength > limit) return tooLarge('input', t.name, t.data.byteLength);
    }
    for (const o of request.outputs ?? []) {
      const bytes = elementCount(o.dims) * bytesPerElement(o.type);
      if (bytes > limit) return tooLarge('output', o.name, bytes);
    }
    return undefined;
  }

  run(request: RunRequest): Promise<RunResult> {
    if (this.closed) return Promise.reject(new DeviceError(`${this.id} is closed`, this.id));
    let refused: Error | undefined;
    try {
      refused = this.refusal(request);
    } catch (err) {
      refused = err as Error; // an output type without a size
    }
    if (refused) return Promise.reject(refused);
    let slot: WorkerSlot | undefined;
    for (const s of this.slots) if (s.alive && (!slot || s.inFlight.size < slot.inFlight.size)) slot = s;
    if (!slot) return Promise.reject(new DeviceError(`${this.id} has no live worker`, this.id));
    const target = slot;
    const key = request.graphKey;
    this.runStarted(key);
    return new Promise<RunResult>((resolve, reject) => {
      const seq = this.seq++;
      const idle = target.inFlight.size === 0;
      target.inFlight.set(seq, {
        resolve: (result) => {
          this.runSettled(key);
          resolve(result);
        },
        reject: (err) => {
          this.runSettled(key);
          reject(err);
        },
      });
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

  /**
   * Hands the outbox over, in messages whose arenas stay under MAX_ARENA_BYTES. Never throws (it
   * runs in setImmediate, where a throw would end the process): a message that cannot be built
   * fails its own tasks.
   */
  private flush(slot: WorkerSlot): void {
    const batch = slot.outbox;
    slot.outbox = [];
    if (!slot.alive || batch.length === 0) return;
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < batch.length; i++) {
      const size = this.arenaBytes(batch[i].request);
      if (i > start && bytes + size > MAX_ARENA_BYTES) {
        this.send(slot, batch.slice(start, i));
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    this.send(slot, start === 0 ? batch : batch.slice(start));
  }

  private arenaBytes(request: RunRequest): number {
    let bytes = 0;
    for (const t of request.inputs) if (!poolOf(t.data)) bytes += align64(t.data.byteLength);
    for (const o of request.outputs ?? []) bytes += align64(elementCount(o.dims) * bytesPerElement(o.type));
    return bytes;
  }

  private send(slot: WorkerSlot, batch: Array<{ seq: number; request: RunRequest }>): void {
    try {
      this.pack(slot, batch);
    } catch (err) {
      this.encoder.reset();
      const failure = new DeviceError(`${this.id}: could not hand ${batch.length} request(s) to worker ${slot.index}: ${(err as Error).message}`, this.id);
      for (const { seq } of batch) {
        const pending = slot.inFlight.get(seq);
        if (!pending) continue;
        slot.inFlight.delete(seq);
        this.letGo(slot);
        pending.reject(failure);
      }
    }
  }

  /** Packs tasks into pooled arenas and hands them to the worker in one message. */
  private pack(slot: WorkerSlot, batch: Array<{ seq: number; request: RunRequest }>): void {
    let inBytes = 0;
    let outBytes = 0;
    for (const { request } of batch) {
      for (const t of request.inputs) if (!poolOf(t.data)) inBytes += align64(t.data.byteLength);
      for (const o of request.outputs ?? []) outBytes += align64(elementCount(o.dims) * bytesPerElement(o.type));
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
    try {
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
          inOffset += align64(data.byteLength);
        }
        let outputs: TensorRef[] | undefined;
        if (request.outputs) {
          outputs = [];
          for (const o of request.outputs) {
            const length = elementCount(o.dims);
            outputs.push({ name: o.name, type: o.type, dims: o.dims, buffer: outIndex, byteOffset: outOffset, length });
            outOffset += align64(length * bytesPerElement(o.type));
          }
        }
        encodeTask(encoder, { seq, key: request.graphKey, inputs, outputs, sentAt });
      }
      const id = this.runId++;
      this.post(slot, { op: 'run', id, buffers, strings: encoder.strings, tasks: encoder.finish() }, buffers);
      slot.runs.set(id, { seqs: batch.map((t) => t.seq), owners });
    } catch (err) {
      // Nothing was handed over: the arenas go back (caller-filled buffers stay with the caller).
      for (const arena of [inArena, outArena]) if (arena) this.pool.release(arena);
      throw err;
    }
    this.encoder.reset();
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
    return { ...this.pool.getStats(), graphMemory: this.graphMemoryStats() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const failure = new DeviceError(`${this.id} was closed while the task ran`, this.id);
    await Promise.all(this.slots.map((slot) => this.retire(slot, failure)));
    this.graphs.clear();
    this.unloading.clear();
    this.graphMemory.clear();
  }

  /**
   * Fails the worker's tasks at once, then asks it to release its sessions and exit. One still
   * inside a long inference is never terminated (that aborts the process): it is left to finish
   * unref'd, its results discarded, and an exiting process waits for it (runtime-guard).
   */
  private async retire(slot: WorkerSlot, failure: DeviceError): Promise<void> {
    const wasAlive = slot.alive;
    this.failSlot(slot, failure);
    if (!wasAlive) return;
    const exited = new Promise<'exited'>((resolve) => slot.worker.once('exit', () => resolve('exited')));
    this.post(slot, { op: 'close' });
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'busy'>((resolve) => (timer = setTimeout(() => resolve('busy'), WORKER_CLOSE_MS)));
    await Promise.race([exited, grace]);
    clearTimeout(timer);
  }
}
