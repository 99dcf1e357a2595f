import { makeBatchMessage } from './batch-message';
import type { DoneFunction, NodeMessage, NodeStatus, SendFunction } from './red';

export type BatchMode = 'count' | 'time' | 'adaptive';

export interface BatchCollectorOptions {
  mode: BatchMode;
  /** Items per batch in 'count' mode; the fallback target in 'adaptive' mode. */
  count: number;
  /** Longest the first item of a batch waits (ms); 0 = no limit (count mode only). */
  timeoutMs: number;
  /** Hard bound on buffered items: a batch is sent when it reaches this, whatever the mode. */
  maxItems: number;
  /** The graph's current batch cap (adaptive mode), or undefined when unknown (not loaded, batching off). */
  adaptiveCap?(): number | undefined;
  status(status: NodeStatus): void;
}

interface Held {
  msg: NodeMessage;
  send: SendFunction;
  done: DoneFunction;
}

/**
 * What an ncs2-batch node does, without Node-RED. Messages are buffered (at most maxItems) until
 * the batch is full or its first item has waited timeoutMs; then one batch message is sent and
 * every buffered message's done() is called, since each has been handed on. Messages still held
 * when the node closes end with done(err): the flow is stopping, so nothing downstream can be
 * relied on to take them.
 */
export class BatchCollector {
  private held: Held[] = [];
  private target = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private sent = 0;

  constructor(private readonly options: BatchCollectorOptions) {}

  start(): void {
    this.render();
  }

  onInput(msg: NodeMessage, send: SendFunction, done: DoneFunction): void {
    if (this.closed) {
      done(new Error('ncs2-batch is stopping; the message was not batched'));
      return;
    }
    if (this.held.length === 0) this.begin();
    this.held.push({ msg, send, done });
    if (this.held.length >= this.target) this.flush(this.options.mode === 'time' ? 'max items' : 'count');
    else if (this.held.length === 1) this.render();
  }

  /** A new batch starts: fix its size target (adaptive reads the graph now) and its deadline. */
  private begin(): void {
    const { mode, count, maxItems, timeoutMs } = this.options;
    const wanted = mode === 'time' ? maxItems : mode === 'adaptive' ? (this.options.adaptiveCap?.() ?? count) : count;
    this.target = Math.max(1, Math.min(maxItems, wanted));
    if (timeoutMs > 0) {
      this.timer = setTimeout(() => this.flush('time'), timeoutMs);
    }
  }

  private flush(trigger: string): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const held = this.held;
    this.held = [];
    if (held.length === 0) return;
    const batch = makeBatchMessage(
      held.map((h) => h.msg),
      trigger,
    );
    // Any item's send works: each is bound to this node. done() after send: the batch carries them on.
    held[held.length - 1].send(batch);
    for (const h of held) h.done();
    this.sent++;
    this.render();
  }

  private render(): void {
    const waiting = this.held.length;
    this.options.status(waiting > 0 ? { fill: 'blue', shape: 'dot', text: `${waiting}/${this.target} waiting` } : { fill: 'grey', shape: 'ring', text: `${this.sent} sent` });
  }

  get waiting(): number {
    return this.held.length;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const held = this.held;
    this.held = [];
    for (const h of held) h.done(new Error(`ncs2-batch stopped with ${held.length} message${held.length === 1 ? '' : 's'} waiting for a batch; this one was not sent`));
  }
}
