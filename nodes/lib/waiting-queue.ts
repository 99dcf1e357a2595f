import type { QueuePolicy } from '../../src/engine';

export type Offer<T> = { outcome: 'queued' } | { outcome: 'rejected' | 'dropped'; item: T };

/**
 * A bounded FIFO with the engine's queue policies, for messages an ncs2-infer node holds before
 * it can hand them to the engine (model still loading, or the node's in-flight limit reached): 'reject' refuses the newcomer, 'drop-newest' drops it, 'drop-oldest' drops the item that
 * waited longest and keeps the newcomer (what a live camera wants).
 */
export class WaitingQueue<T> {
  private items: T[] = [];

  constructor(
    readonly capacity: number,
    readonly policy: QueuePolicy,
  ) {}

  get length(): number {
    return this.items.length;
  }

  offer(item: T): Offer<T> {
    if (this.items.length < this.capacity) {
      this.items.push(item);
      return { outcome: 'queued' };
    }
    // With capacity 0 there is no oldest to give up: the newcomer is the one dropped.
    if (this.policy === 'drop-oldest' && this.items.length > 0) {
      const oldest = this.items.shift()!;
      this.items.push(item);
      return { outcome: 'dropped', item: oldest };
    }
    return { outcome: this.policy === 'reject' ? 'rejected' : 'dropped', item };
  }

  /** The item that waited longest, removed; undefined when empty. */
  take(): T | undefined {
    return this.items.shift();
  }

  takeAll(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
