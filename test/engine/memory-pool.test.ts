import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import { createHash } from 'crypto';
import * as os from 'os';
import * as path from 'path';
import { MemoryPool, MemoryPoolManager, sizeClass } from '../../src/engine/memory/memory-pool';
import { LruCache } from '../../src/engine/graph/lru-cache';

describe('memory pool', function () {
  it('rounds sizes up to classes that waste at most 25%', function () {
    for (const n of [1, 256, 257, 1000, 602_112, 1_000_000, 3 * 224 * 224 * 4 * 32]) {
      const c = sizeClass(n);
      assert.ok(c >= n, `${c} >= ${n}`);
      assert.ok(n <= 256 || c <= n * 1.25, `${c} <= 1.25 x ${n}`);
    }
    assert.equal(sizeClass(602_112), 655_360);
  });

  it('reuses released buffers of the same class and counts hits and misses', function () {
    const pool = new MemoryPool({ deviceId: 'd', poolSizeMb: 1 });
    const a = pool.acquire(1000);
    assert.equal(a.byteLength, sizeClass(1000));
    pool.release(a);
    const b = pool.acquire(900);
    assert.equal(b, a, 'the same buffer comes back');
    const s = pool.getStats();
    assert.equal(s.bufferHits, 1);
    assert.equal(s.bufferMisses, 1);
    assert.equal(s.bufferHitRate, 0.5);
    assert.equal(s.totalAllocatedBytes, a.byteLength);
  });

  it('keeps no more than its size: releases past the cap are let go and counted', function () {
    const pool = new MemoryPool({ poolSizeMb: 1 });
    const bufs = [pool.acquire(600_000), pool.acquire(600_000)];
    bufs.forEach((b) => pool.release(b));
    const s = pool.getStats();
    assert.equal(s.bufferOverflows, 1);
    assert.equal(s.availableBuffers, 1);
    assert.ok(s.totalAllocatedBytes <= s.poolSizeBytes);
    assert.ok(s.peakMemoryBytes >= 2 * 600_000);
  });

  it('offers the promised handle API and stats keys', function () {
    const pool = new MemoryPool({ deviceId: 'stick-0', poolSizeMb: 4, maxCachedGraphs: 2 });
    const h = pool.allocateBuffer(4096);
    assert.equal(pool.getBuffer(h.id), h);
    pool.releaseBuffer(h.id);
    assert.equal(pool.getBuffer(h.id), undefined);
    const h2 = pool.allocateBuffer(4096);
    assert.equal(h2.buffer, h.buffer, 'released handle memory is reused');
    pool.freeBuffer(h2);
    assert.equal(pool.getStats().availableBuffers, 0, 'freed memory does not return to the pool');
    pool.cacheGraph('g1', { bytes: 1 }, [[1, 3]], [[1, 10]]);
    pool.cacheGraph('g2', {}, [], []);
    pool.cacheGraph('g3', {}, [], []);
    assert.equal(pool.getCachedGraph('g1'), undefined, 'least recently used graph evicted');
    assert.equal(pool.getCachedGraph('g3')!.graphId, 'g3');
    const s = pool.getStats();
    for (const key of ['deviceId', 'totalAllocatedBytes', 'peakMemoryBytes', 'poolSizeBytes', 'utilization', 'bufferCount', 'availableBuffers', 'bufferHits', 'bufferMisses', 'bufferHitRate', 'cachedGraphs', 'graphCacheHits', 'graphCacheMisses', 'graphCacheHitRate']) {
      assert.ok(key in s, key);
    }
    assert.equal(s.cachedGraphs, 2);
    assert.equal(s.graphCacheHits, 1);
    assert.equal(s.graphCacheMisses, 1);
    pool.resetStats();
    assert.equal(pool.getStats().bufferHits, 0);
    pool.clear();
    assert.equal(pool.getStats().cachedGraphs, 0);
  });

  it('maps a model file by streaming its hash, without holding it', async function () {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pool-'));
    const file = path.join(dir, 'm.onnx');
    const bytes = Buffer.alloc(3 * 1024 * 1024, 7);
    await fs.writeFile(file, bytes);
    const mapped = await new MemoryPool().mmapFile(file);
    assert.equal(mapped.size, bytes.length);
    assert.equal(mapped.sha256, createHash('sha256').update(bytes).digest('hex'));
    await fs.rm(dir, { recursive: true });
  });

  it('manager keeps one pool per device', function () {
    const m = new MemoryPoolManager({ deviceCount: 2, poolSizeMb: 8 });
    assert.equal(m.getPool(0), m.getPool('device-0'));
    assert.deepEqual(Object.keys(m.getAllStats()), ['device-0', 'device-1']);
  });
});

describe('LRU cache', function () {
  it('evicts the least recently used entry and counts hits, misses and evictions', function () {
    const evicted: string[] = [];
    const c = new LruCache<string, number>(2, (k) => evicted.push(k));
    c.set('a', 1);
    c.set('b', 2);
    assert.equal(c.get('a'), 1); // a is now the most recent
    c.set('c', 3);
    assert.deepEqual(evicted, ['b']);
    assert.equal(c.get('b'), undefined);
    assert.deepEqual(c.stats(), { size: 2, capacity: 2, hits: 1, misses: 1, evictions: 1 });
    assert.throws(() => new LruCache(0), /at least 1, got 0/);
  });
});
