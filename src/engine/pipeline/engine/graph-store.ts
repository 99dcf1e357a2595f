import { promises as fs } from 'fs';
import { createHash } from 'crypto';
import type { Device, DeviceGraph, SessionSettings } from '../../devices/device';
import { ModelLoadError } from '../../errors';
import { LruCache } from '../../graph/lru-cache';
import { readModelInfo, hashModel, ModelFormatError, type ModelInfo } from '../../graph/model-info';
import type { OpCount } from '../../graph/op-count';
import { countModelOpsOffThread } from '../../graph/op-count-worker-client';
import type { BatchingOptions } from '../batcher';
import type { DeviceRegistry } from './device-registry';
import { GraphCounters } from './engine-stats';
import { GraphBatching } from './graph-batching';
import { GraphQueue } from './graph-queue';
import { guarded, type ErrorSink } from './periodic';
import type { EngineOptions, GraphHandle, GraphOptions, GraphState } from './types';

/** Where a graph is loaded, where it is loading, and where it could not be loaded (and why). */
export class GraphLoadState {
  readonly loaded = new Map<string, DeviceGraph>();
  readonly loading = new Map<string, Promise<DeviceGraph | undefined>>();
  readonly errors = new Map<string, string>();

  /** Why no device has the graph, for an error a user can act on. */
  reasons(): string {
    return [...this.errors.entries()].map(([d, m]) => `${d}: ${m}`).join('; ');
  }
}

/** A loaded model: what it is, who holds it, and the parts that run it. */
export interface GraphEntry {
  readonly id: string;
  readonly name: string;
  readonly hash: string;
  readonly model: Uint8Array;
  readonly info: ModelInfo;
  readonly ops: OpCount;
  readonly session: SessionSettings;
  readonly sessionKey: string;
  /** Users holding it (loadGraph adds one, releaseGraph drops one). */
  refs: number;
  /** Devices it may load on (undefined: every device, including ones added later). */
  placement?: string[];
  /** The first input's symbolic batch dimension, for output shapes known before a run. */
  readonly batchSymbol?: string;
  idleTimer?: NodeJS.Timeout;
  readonly load: GraphLoadState;
  readonly queue: GraphQueue;
  readonly batching: GraphBatching;
  readonly counters: GraphCounters;
}


export interface GraphStoreContext {
  devices: DeviceRegistry;
  options: EngineOptions;
  warn: ErrorSink;
  /** A graph became runnable somewhere (or its batch-mates are due): queued tasks may start. */
  pump(): void;
  /** A graph was forgotten: what others keep for it goes too. */
  freed(graph: GraphEntry): void;
}

/**
 * The loaded graphs: loading (deduplicated by content and session options), placement on
 * devices, the compiled-graph cache (model x device x session options, least recently used out),
 * and freeing graphs nobody uses after an idle time.
 */
export class GraphStore {
  private readonly graphs = new Map<string, GraphEntry>();
  private readonly pending = new Map<string, Promise<GraphEntry>>();
  readonly cache: LruCache<string, { graph: GraphEntry; deviceId: string }>;

  constructor(private readonly ctx: GraphStoreContext) {
    // A graph someone holds is never evicted (its tasks would fail with "not loaded"): the
    // capacity bounds idle graphs, and a release trims the cache back to it.
    this.cache = new LruCache(
      ctx.options.maxCachedGraphs ?? 10,
      (_key, { graph, deviceId }) => this.evict(graph, deviceId),
      (_key, { graph }) => graph.refs === 0,
    );
  }

  get(id: string): GraphEntry | undefined {
    return this.graphs.get(id);
  }

  values(): IterableIterator<GraphEntry> {
    return this.graphs.values();
  }

  get size(): number {
    return this.graphs.size;
  }

  cacheKey(g: GraphEntry, deviceId: string): string {
    return `${g.hash}|${deviceId}|${g.sessionKey}`;
  }

  /**
   * Loads a model (path or bytes) on its devices. Loading the same content with the same options
   * again returns the same graph (a cache hit) and adds a reference.
   */
  async load(model: string | Uint8Array, options: GraphOptions): Promise<GraphEntry> {
    const bytes = typeof model === 'string' ? await readModelFile(model) : model;
    const session = options.session ?? {};
    const sessionKey = JSON.stringify({ ep: session.executionProviders ?? ['cpu'], opt: session.graphOptimizationLevel ?? 'all' });
    const hash = hashModel(bytes);
    const id = createHash('sha256').update(hash).update(sessionKey).digest('hex').slice(0, 16);
    // looked up before any await: a second load of the same model joins the first while it loads
    const pending = this.pending.get(id);
    const existing = this.graphs.get(id) ?? (pending && (await pending));
    if (existing && this.graphs.has(id)) {
      existing.refs++;
      clearTimeout(existing.idleTimer);
      for (const deviceId of this.ctx.devices.ids()) this.cache.get(this.cacheKey(existing, deviceId));
      // One model, one set of sessions: a user placing it elsewhere widens the placement, and
      // its tasks say where they may run (SubmitOptions.devices).
      if (existing.placement) existing.placement = options.devices ? [...new Set([...existing.placement, ...options.devices])] : undefined;
      // a reload (a redeploy) tries again where loading failed: the cause may have been fixed
      existing.load.errors.clear();
      this.fillPlacement(existing);
      if (options.queueCapacity) existing.queue.capacity = options.queueCapacity;
      if (options.queuePolicy) existing.queue.policy = options.queuePolicy;
      if (options.batching !== undefined) this.configureBatching(existing, options.batching);
      return existing;
    }
    const loading = this.create(id, hash, bytes, model, session, sessionKey, options);
    this.pending.set(id, loading);
    try {
      return await loading;
    } finally {
      this.pending.delete(id);
    }
  }

  private async create(id: string, hash: string, bytes: Uint8Array, source: string | Uint8Array, session: SessionSettings, sessionKey: string, options: GraphOptions): Promise<GraphEntry> {
    const where = typeof source === 'string' ? source : `${bytes.byteLength} bytes`;
    let info: ModelInfo;
    try {
      info = readModelInfo(bytes);
    } catch (err) {
      if (err instanceof ModelFormatError) throw new ModelLoadError(`cannot load model from ${where}: ${err.message}`);
      throw err;
    }
    let ops: OpCount;
    try {
      ops = await countModelOpsOffThread(bytes);
    } catch (err) {
      throw new ModelLoadError(`cannot load model from ${where}: onnxruntime could not run it (${(err as Error).message.split('\n')[0]})`);
    }
    const name = options.name ?? (typeof source === 'string' ? source.split('/').pop()! : hash.slice(0, 12));
    const counters = new GraphCounters();
    const firstInput = info.inputs[0];
    const graph: GraphEntry = {
      id,
      name,
      hash,
      model: bytes,
      info,
      ops,
      session,
      sessionKey,
      refs: 1,
      placement: options.devices,
      batchSymbol: firstInput && typeof firstInput.dims[0] === 'string' ? firstInput.dims[0] : undefined,
      load: new GraphLoadState(),
      queue: new GraphQueue(name, options.queueCapacity ?? this.ctx.options.queueCapacity ?? 1024, options.queuePolicy ?? this.ctx.options.queuePolicy ?? 'reject', counters),
      batching: new GraphBatching(() => this.ctx.pump(), this.ctx.warn),
      counters,
    };
    this.configureBatching(graph, options.batching);
    const targets = this.ctx.devices.list().filter((d) => this.placed(graph, d));
    if (graph.placement && targets.length === 0) {
      throw new ModelLoadError(`none of the devices ${graph.placement.join(', ')} chosen for ${graph.name} is registered; registered: ${this.ctx.devices.ids().join(', ') || '(none)'}`);
    }
    const results = await Promise.all(targets.map((d) => this.ensureLoaded(graph, d)));
    if (targets.length > 0 && results.every((r) => r === undefined)) {
      throw new ModelLoadError(`cannot load model from ${where} on any device (${graph.load.reasons()})`);
    }
    this.graphs.set(id, graph);
    return graph;
  }

  private configureBatching(graph: GraphEntry, batching: BatchingOptions | boolean | undefined): void {
    const warning = graph.batching.configure(graph.info, batching, graph.name);
    if (warning) this.ctx.warn(warning, { graph: graph.id, graphName: graph.name });
  }

  private placed(graph: GraphEntry, device: Device): boolean {
    return !graph.placement || graph.placement.includes(device.id);
  }

  /** Loads a graph onto placed devices it is missing from (added later, or pushed out of the cache). */
  fillPlacement(graph: GraphEntry): void {
    for (const device of this.ctx.devices.values()) {
      if (this.placed(graph, device) && !graph.load.loaded.has(device.id) && !graph.load.loading.has(device.id) && !graph.load.errors.has(device.id)) {
        void this.ensureLoaded(graph, device);
      }
    }
  }

  /** A new device: graphs in use load onto it in the background. */
  deviceAdded(device: Device): void {
    for (const g of this.graphs.values()) if (g.refs > 0 && this.placed(g, device)) void this.ensureLoaded(g, device);
  }

  /**
   * A device went: every graph forgets it, its load failures there included (a device registered
   * later under the same id is another device), and its cache entries go (without unloading: the
   * device closes).
   */
  forgetDevice(deviceId: string): void {
    for (const g of this.graphs.values()) {
      g.load.loaded.delete(deviceId);
      g.load.loading.delete(deviceId);
      g.load.errors.delete(deviceId);
      this.cache.delete(this.cacheKey(g, deviceId));
    }
  }

  private ensureLoaded(graph: GraphEntry, device: Device): Promise<DeviceGraph | undefined> {
    const { load } = graph;
    const have = load.loaded.get(device.id);
    if (have) return Promise.resolve(have);
    let loading = load.loading.get(device.id);
    if (loading) return loading;
    const key = this.cacheKey(graph, device.id);
    this.cache.get(key); // counts the miss
    // the entry goes before the pump below: a pump that still saw this load would leave tasks waiting for it
    const settle = () => {
      if (load.loading.get(device.id) === loading) load.loading.delete(device.id);
      // a device removed (or replaced under its id) while loading: its result is not the current one's
      return this.ctx.devices.get(device.id) === device;
    };
    loading = device.load({ key, model: graph.model, session: graph.session }).then(
      (dg) => {
        if (!settle()) return undefined;
        load.loaded.set(device.id, dg);
        load.errors.delete(device.id);
        if (dg.fallbackReason) this.ctx.warn(new ModelLoadError(`${graph.name} on ${device.id}: ${dg.fallbackReason}`), { graph: graph.id, graphName: graph.name, device: device.id });
        this.cache.set(key, { graph, deviceId: device.id });
        this.ctx.pump();
        return dg;
      },
      (err: Error) => {
        if (!settle()) return undefined;
        load.errors.set(device.id, err.message);
        this.ctx.warn(new ModelLoadError(`${graph.name} could not be loaded on ${device.id}: ${err.message}`), { graph: graph.id, graphName: graph.name, device: device.id });
        this.ctx.pump(); // tasks that waited for this load fail now if no other device can run them
        return undefined;
      },
    );
    load.loading.set(device.id, loading);
    return loading;
  }

  private evict(graph: GraphEntry, deviceId: string): void {
    graph.load.loaded.delete(deviceId);
    void this.ctx.devices.get(deviceId)?.unload(this.cacheKey(graph, deviceId));
    // An idle graph pushed out of the cache everywhere is forgotten; one in use reloads on demand.
    if (graph.refs === 0 && graph.load.loaded.size === 0 && graph.load.loading.size === 0) this.free(graph);
  }

  /**
   * Drops one reference. When the last one goes, queued and running tasks finish first; then the
   * graph stays loaded but idle for `idleGraphMs`, or with `free` is unloaded now.
   */
  async release(id: string, options: { free?: boolean }): Promise<void> {
    const g = this.graphs.get(id);
    if (!g || g.refs === 0 || --g.refs > 0) return;
    if (!g.queue.idle) await g.queue.drained();
    if (g.refs > 0) return; // re-acquired while draining
    if (options.free) return this.free(g);
    this.cache.trim();
    clearTimeout(g.idleTimer);
    g.idleTimer = setTimeout(
      guarded(() => g.refs === 0 && this.free(g), this.ctx.warn),
      this.ctx.options.idleGraphMs ?? 60_000,
    );
    g.idleTimer.unref?.();
  }

  private free(g: GraphEntry): void {
    clearTimeout(g.idleTimer);
    if (this.graphs.get(g.id) !== g) return;
    this.graphs.delete(g.id);
    g.batching.stop();
    for (const deviceId of [...g.load.loaded.keys()]) {
      this.cache.delete(this.cacheKey(g, deviceId));
      this.evict(g, deviceId);
    }
    this.ctx.freed(g);
  }

  handle(g: GraphEntry): GraphHandle {
    return { id: g.id, name: g.name, info: g.info, ops: g.ops, ...this.status(g), loadedOn: [...g.load.loaded.keys()] };
  }

  /** See GraphState. */
  status(g: GraphEntry): { state: GraphState; stateReason?: string } {
    const failures = g.load.reasons();
    if (g.load.loaded.size > 0) return failures ? { state: 'ready', stateReason: `could not be loaded on ${failures}` } : { state: 'ready' };
    if (g.load.loading.size > 0 || this.loadsOnDemand(g)) return { state: 'loading' };
    return { state: 'failed', stateReason: this.whyUnrunnable(g) };
  }

  /** Why no device can run the graph (it is loaded nowhere, and loading nowhere). */
  whyUnrunnable(g: GraphEntry): string {
    if (this.ctx.devices.size === 0) return 'no device is registered';
    return `it could not be loaded (${g.load.reasons() || 'no placed device'})`;
  }

  /** A placed device that has not failed to load it: the next pump loads it there (see fillPlacement). */
  private loadsOnDemand(g: GraphEntry): boolean {
    for (const device of this.ctx.devices.values()) if (this.placed(g, device) && !g.load.errors.has(device.id)) return true;
    return false;
  }

  /**
   * Whether one of `deviceIds` can run the graph: it has it, is loading it, or is placed and has
   * not failed to load it. Then undefined; otherwise each id with why it cannot.
   */
  whyNotRunnableOn(g: GraphEntry, deviceIds: readonly string[]): string | undefined {
    const { loaded, loading, errors } = g.load;
    for (const id of deviceIds) {
      const device = this.ctx.devices.get(id);
      if (device && (loaded.has(id) || loading.has(id) || (this.placed(g, device) && !errors.has(id)))) return undefined;
    }
    const reasons = deviceIds.map((id) => {
      const device = this.ctx.devices.get(id);
      if (!device) return `${id}: no device has this id`;
      if (errors.has(id)) return `${id}: could not load it (${errors.get(id)})`;
      return `${id}: ${g.name} is not placed there`;
    });
    return `${reasons.join('; ') || 'the list of devices is empty'}; registered devices: ${this.ctx.devices.ids().join(', ') || '(none)'}`;
  }

  /** Tasks waiting that this device could take. */
  queuedFor(deviceId: string): number {
    let n = 0;
    for (const g of this.graphs.values()) if (g.load.loaded.has(deviceId)) n += g.queue.length;
    return n;
  }

  resetStats(): void {
    for (const g of this.graphs.values()) g.counters.reset();
    this.cache.resetStats();
  }

  /** Forgets every graph (the engine closed its devices, which unloaded them). */
  clear(): void {
    for (const g of this.graphs.values()) {
      clearTimeout(g.idleTimer);
      g.batching.stop();
    }
    this.graphs.clear();
    this.cache.clear();
  }
}

async function readModelFile(path: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ModelLoadError(`cannot read model file ${path}: ${why}; expected a readable .onnx file`);
  }
}
