/**
 * A bounded least-recently-used map that counts hits, misses and evictions. Map keeps insertion
 * order, so re-inserting on access makes the first key the least recently used.
 *
 * With `evictable`, only entries it accepts are pushed out (a compiled graph a node still holds is
 * not): the capacity then bounds the idle entries, and the map may hold more while they are in
 * use. Call trim() when an entry becomes evictable, to bring the map back under its capacity.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>();
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(
    readonly capacity: number,
    private readonly onEvict?: (key: K, value: V) => void,
    private readonly evictable?: (key: K, value: V) => boolean,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`cache capacity must be at least 1, got ${capacity}`);
  }

  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    if (this.map.has(key)) this.map.delete(key);
    this.map.set(key, value);
    this.trim();
  }

  /** Evicts least recently used evictable entries while the map is over its capacity. */
  trim(): void {
    while (this.map.size > this.capacity) {
      let victim: [K, V] | undefined;
      for (const entry of this.map) {
        if (!this.evictable || this.evictable(entry[0], entry[1])) {
          victim = entry;
          break;
        }
      }
      if (!victim) return; // everything over the capacity is in use
      this.map.delete(victim[0]);
      this.evictions++;
      this.onEvict?.(victim[0], victim[1]);
    }
  }

  delete(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) this.map.delete(key);
    return value;
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }

  resetStats(): void {
    this.hits = this.misses = this.evictions = 0;
  }

  stats(): { size: number; capacity: number; hits: number; misses: number; evictions: number } {
    return { size: this.map.size, capacity: this.capacity, hits: this.hits, misses: this.misses, evictions: this.evictions };
  }
}
