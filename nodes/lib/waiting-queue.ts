import type { QueuePolicy } from '../../src/engine/pipeline/engine';

export type Offer<T> = { outcome: 'queued' } | { outcome: 'rejected' | 'dropped'; item: T };

/**
 * A bounded FIFO with the engine's queue policies, for messages that arrive before the model is
 * loaded: 'reject' refuses the newcomer, 'drop-newest' drops it, 'drop-oldest' drops the item that
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
    if (this.policy === 'drop-oldest') {
      const oldest = this.items.shift()!;
      this.items.push(item);
      return { outcome: 'dropped', item: oldest };
    }
    return { outcome: this.policy === 'drop-newest' ? 'dropped' : 'rejected', item };
  }

  takeAll(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
