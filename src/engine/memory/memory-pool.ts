import { promises as fs } from 'fs';
import { createHash } from 'crypto';
import { createReadStream } from 'fs';
import { LruCache } from '../graph/lru-cache';

/**
 * Size-classed pool of ArrayBuffers for tensors.
 *
 * Plain ArrayBuffers (not SharedArrayBuffer): onnxruntime-node rejects typed arrays over a
 * SharedArrayBuffer ("Invalid argument" from napi_get_arraybuffer_info), so a buffer reaches a
 * worker by transfer (zero-copy: ownership moves, bytes stay put) and comes back the same way.
 * A transferred buffer is detached here until its worker returns it, which is why the pool hands out
 * and takes back ArrayBuffers rather than keeping references to them.
 */
export interface MemoryPoolOptions {
  deviceId?: string;
  /** Upper bound on bytes the pool keeps (in use + idle). Past it, released buffers are let go. */
  poolSizeMb?: number;
  maxCachedGraphs?: number;
}

export interface CachedGraph {
  graphId: string;
  graphData: unknown;
  inputShapes: unknown;
  outputShapes: unknown;
  cachedAt: number;
}

/** What a device's loaded graphs (their runtime sessions) take in memory, when the device knows. */
export interface GraphMemoryStats {
  /**
   * Per graph key: the model's size, its copies (one session per worker), the growth of the
   * process's resident memory measured while each copy's session was created, and `bytes`, the
   * larger of the two per copy, summed (what the budget counts).
   */
  byGraph: Record<string, { modelBytes: number; copies: number; measuredBytes: number; bytes: number }>;
  totalBytes: number;
  /** Loads that would take the total past this are refused. */
  budgetBytes: number;
}

export interface MemoryPoolStats {
  deviceId: string;
  totalAllocatedBytes: number;
  peakMemoryBytes: number;
  poolSizeBytes: number;
  utilization: number;
  bufferCount: number;
  availableBuffers: number;
  bufferHits: number;
  bufferMisses: number;
  bufferHitRate: number;
  /** Buffers released while the pool was at its cap, and so dropped instead of kept. */
  bufferOverflows: number;
  cachedGraphs: number;
  graphCacheHits: number;
  graphCacheMisses: number;
  graphCacheEvictions: number;
  graphCacheHitRate: number;
  /** Memory of the loaded graphs, for a device that runs sessions itself (a CPU device). */
  graphMemory?: GraphMemoryStats;
}

export interface PooledBuffer {
  id: number;
  buffer: ArrayBuffer;
  byteLength: number;
}

export interface MappedFile {
  path: string;
  size: number;
  sha256: string;
}

/** Size classes: powers of two with four steps between them, so waste stays under 25%. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  for (const step of [1, 1.25, 1.5, 1.75, 2]) {
    const size = pow * step;
    if (size >= bytes) return size;
  }
  return pow * 2;
}

export class MemoryPool {
  readonly deviceId: string;
  poolSizeBytes: number;
  private readonly idle = new Map<number, ArrayBuffer[]>();
  private readonly handles = new Map<number, PooledBuffer>();
  private graphs: LruCache<string, CachedGraph>;
  private nextId = 1;
  private bytesInUse = 0;
  private bytesIdle = 0;
  private peak = 0;
  private hits = 0;
  private misses = 0;
  private overflows = 0;
  private buffersInUse = 0;
  private idleCount = 0;

  constructor(options: MemoryPoolOptions = {}) {
    this.deviceId = options.deviceId ?? 'default';
    this.poolSizeBytes = Math.round((options.poolSizeMb ?? 512) * 1024 * 1024);
    this.graphs = new LruCache<string, CachedGraph>(options.maxCachedGraphs ?? 10);
  }

  /**
   * Applies a pipeline's pool options to a pool that may already exist (the manager's pools are
   * process-wide): a new byte cap (idle buffers past it are let go) and graph cache size (the
   * most recently used graphs are kept).
   */
  configure(options: { poolSizeMb?: number; maxCachedGraphs?: number }): void {
    if (options.poolSizeMb !== undefined) {
      this.poolSizeBytes = Math.round(options.poolSizeMb * 1024 * 1024);
      for (const [size, list] of this.idle) {
        while (list.length && this.bytesInUse + this.bytesIdle > this.poolSizeBytes) {
          list.pop();
          this.bytesIdle -= size;
          this.idleCount--;
        }
      }
    }
    if (options.maxCachedGraphs !== undefined && options.maxCachedGraphs !== this.graphs.capacity) {
      const resized = new LruCache<string, CachedGraph>(options.maxCachedGraphs);
      for (const graph of this.graphs.values()) resized.set(graph.graphId, graph);
      this.graphs = resized;
    }
  }

  /**
   * Pre-allocates `count` idle buffers of `bytes` each (their size class), within the pool's cap,
   * so the first requests find memory ready. Returns how many it added.
   */
  reserve(bytes: number, count: number): number {
    const size = sizeClass(bytes);
    let list = this.idle.get(size);
    if (!list) this.idle.set(size, (list = []));
    let added = 0;
    while (added < count && this.bytesInUse + this.bytesIdle + size <= this.poolSizeBytes) {
      list.push(new ArrayBuffer(size));
      this.bytesIdle += size;
      this.idleCount++;
      added++;
    }
    this.peak = Math.max(this.peak, this.bytesInUse + this.bytesIdle);
    return added;
  }

  /** Takes a buffer of at least `bytes` (its byteLength is the size class). */
  acquire(bytes: number): ArrayBuffer {
    const size = sizeClass(bytes);
    const list = this.idle.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.hits++;
      this.bytesIdle -= size;
      this.idleCount--;
    } else {
      this.misses++;
      buffer = new ArrayBuffer(size);
    }
    this.bytesInUse += size;
    this.buffersInUse++;
    this.peak = Math.max(this.peak, this.bytesInUse + this.bytesIdle);
    return buffer;
  }

  /** Gives a buffer back for reuse. Buffers not from this pool's size classes are ignored. */
  release(buffer: ArrayBuffer): void {
    const size = buffer.byteLength;
    if (size === 0 || sizeClass(size) !== size) return; // detached or foreign
    this.bytesInUse = Math.max(0, this.bytesInUse - size);
    this.buffersInUse = Math.max(0, this.buffersInUse - 1);
    if (this.bytesInUse + this.bytesIdle + size > this.poolSizeBytes) {
      this.overflows++;
      return;
    }
    let list = this.idle.get(size);
    if (!list) this.idle.set(size, (list = []));
    list.push(buffer);
    this.bytesIdle += size;
    this.idleCount++;
  }

  /** Forgets a buffer that left for good (handed to a caller), keeping the in-use count right. */
  forget(buffer: ArrayBuffer | number): void {
    const size = typeof buffer === 'number' ? buffer : buffer.byteLength;
    this.bytesInUse = Math.max(0, this.bytesInUse - size);
    this.buffersInUse = Math.max(0, this.buffersInUse - 1);
  }

  // The promised handle-based API, on top of acquire/release.
  allocateBuffer(sizeBytes: number): PooledBuffer {
    const buffer = this.acquire(sizeBytes);
    const handle = { id: this.nextId++, buffer, byteLength: sizeBytes };
    this.handles.set(handle.id, handle);
    return handle;
  }

  getBuffer(id: number): PooledBuffer | undefined {
    return this.handles.get(id);
  }

  releaseBuffer(handle: PooledBuffer | number): void {
    const h = typeof handle === 'number' ? this.handles.get(handle) : handle;
    if (!h || !this.handles.delete(h.id)) return;
    this.release(h.buffer);
  }

  freeBuffer(handle: PooledBuffer | number): void {
    const h = typeof handle === 'number' ? this.handles.get(handle) : handle;
    if (!h || !this.handles.delete(h.id)) return;
    this.forget(h.buffer);
  }

  /**
   * Node has no mmap; onnxruntime reads a model file natively when given its path, so large
   * models never pass through the JS heap. This streams the file once for its size and hash.
   */
  async mmapFile(path: string): Promise<MappedFile> {
    const { size } = await fs.stat(path);
    const hash = createHash('sha256');
    await new Promise<void>((resolve, reject) => {
      createReadStream(path).on('data', (chunk) => hash.update(chunk)).on('end', resolve).on('error', reject);
    });
    return { path, size, sha256: hash.digest('hex') };
  }

  cacheGraph(graphId: string, graphData: unknown, inputShapes: unknown, outputShapes: unknown): void {
    this.graphs.set(graphId, { graphId, graphData, inputShapes, outputShapes, cachedAt: Date.now() });
  }

  getCachedGraph(graphId: string): CachedGraph | undefined {
    return this.graphs.get(graphId);
  }

  resetStats(): void {
    this.hits = this.misses = this.overflows = 0;
    this.peak = this.bytesInUse + this.bytesIdle;
    this.graphs.resetStats();
  }

  clear(): void {
    this.idle.clear();
    this.handles.clear();
    this.bytesIdle = 0;
    this.idleCount = 0;
    this.graphs.clear();
  }

  getStats(): MemoryPoolStats {
    const lookups = this.hits + this.misses;
    const g = this.graphs.stats();
    const held = this.bytesInUse + this.bytesIdle;
    return {
      deviceId: this.deviceId,
      totalAllocatedBytes: held,
      peakMemoryBytes: this.peak,
      poolSizeBytes: this.poolSizeBytes,
      utilization: this.poolSizeBytes > 0 ? held / this.poolSizeBytes : 0,
      bufferCount: this.buffersInUse + this.idleCount,
      availableBuffers: this.idleCount,
      bufferHits: this.hits,
      bufferMisses: this.misses,
      bufferHitRate: lookups ? this.hits / lookups : 0,
      bufferOverflows: this.overflows,
      cachedGraphs: g.size,
      graphCacheHits: g.hits,
      graphCacheMisses: g.misses,
      graphCacheEvictions: g.evictions,
      graphCacheHitRate: g.hits + g.misses ? g.hits / (g.hits + g.misses) : 0,
    };
  }
}

/** One pool per device, as the original design's manager had. */
export class MemoryPoolManager {
  private readonly pools = new Map<string, MemoryPool>();
  constructor(private readonly options: { deviceCount?: number; poolSizeMb?: number; maxCachedGraphs?: number } = {}) {
    for (let i = 0; i < (options.deviceCount ?? 0); i++) this.getPool(`device-${i}`);
  }

  getPool(deviceId: string | number): MemoryPool {
    const id = typeof deviceId === 'number' ? `device-${deviceId}` : deviceId;
    let pool = this.pools.get(id);
    if (!pool) {
      pool = new MemoryPool({ deviceId: id, poolSizeMb: this.options.poolSizeMb, maxCachedGraphs: this.options.maxCachedGraphs });
      this.pools.set(id, pool);
    }
    return pool;
  }

  getAllStats(): Record<string, MemoryPoolStats> {
    const out: Record<string, MemoryPoolStats> = {};
    for (const [id, pool] of this.pools) out[id] = pool.getStats();
    return out;
  }
}

let manager: MemoryPoolManager | undefined;
export function getMemoryPoolManager(options: { deviceCount?: number; poolSizeMb?: number; maxCachedGraphs?: number } = {}): MemoryPoolManager {
  if (!manager) manager = new MemoryPoolManager(options);
  return manager;
}

/**
 * Typed arrays over pooled memory that callers filled directly (preprocessing writes into them).
 * Devices move these buffers to their workers without copying; ordinary arrays are copied once
 * into a pooled arena so the caller keeps its data.
 */
const pooledViews = new WeakMap<object, MemoryPool>();

export function markPooled(view: ArrayBufferView, owner: MemoryPool): void {
  pooledViews.set(view, owner);
}

/** Hands a pooled view's buffer over to `narrower`, a view of part of the same buffer. */
export function narrowPooled(view: ArrayBufferView, narrower: ArrayBufferView): void {
  const owner = pooledViews.get(view);
  if (!owner) return;
  pooledViews.delete(view);
  pooledViews.set(narrower, owner);
}

/** The pool a caller-filled tensor came from, so its buffer goes home after the run. */
export function poolOf(view: ArrayBufferView): MemoryPool | undefined {
  return pooledViews.get(view);
}

/**
 * Gives a caller-filled tensor's buffer back to its pool when it will not run (refused, dropped,
 * expired in the queue, or never submitted). A buffer already moved to a device is left alone.
 */
export function releasePooled(view: ArrayBufferView): void {
  const owner = pooledViews.get(view);
  if (!owner) return;
  pooledViews.delete(view);
  if (view.buffer.byteLength > 0) owner.release(view.buffer as ArrayBuffer);
}
