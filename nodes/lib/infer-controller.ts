import { performance } from 'perf_hooks';
import { QueueFullError } from '../../src/engine/errors';
import { runInference } from '../../src/engine/io/infer';
import type { GraphLease, GraphState, GraphUser, LoadedGraph } from './graph-lease';
import type { DoneFunction, NodeMessage, NodeStatus, SendFunction } from './red';
import { StatusMeter, type StatusWords } from './status-meter';
import { WaitingQueue } from './waiting-queue';
import { readBatch, type BatchItem } from './batch-message';

interface Pending {
  msg: NodeMessage;
  send: SendFunction;
  done: DoneFunction;
  arrivedAt: number;
}

export interface InferControllerOptions {
  /** The graph config's lease, or why there is none (no graph selected, invalid graph config). */
  graph: GraphLease | Error;
  status(status: NodeStatus): void;
  warn(message: string): void;
  words: StatusWords;
  /** Status refresh period (ms); tests shorten it. */
  statusIntervalMs?: number;
  /** Turn a batch message from ncs2-batch back into one message per item. */
  split?: boolean;
  /** Reports a failed batch item to Catch nodes with that item's own message (node.error(err, msg)). */
  itemError?(err: Error, msg: NodeMessage): void;
}

/** A message the queue policy dropped (drop-oldest/drop-newest), as opposed to one that failed. */
function isPolicyDrop(err: unknown): boolean {
  return err instanceof QueueFullError && err.reason === 'dropped';
}

/**
 * What an ncs2-infer node does, without Node-RED: takes messages, holds them (bounded) while the
 * model loads, runs them through the engine, and ends each in exactly one send+done, one
 * done(err), or, for a message the chosen drop policy discarded, a done() counted in the status.
 */
export class InferController implements GraphUser {
  private state: GraphState = { state: 'idle' };
  private readonly waiting: WaitingQueue<Pending>;
  private readonly meter: StatusMeter;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: InferControllerOptions) {
    const bound = options.graph instanceof Error ? { capacity: 1, policy: 'reject' as const } : options.graph.waitingBound;
    this.waiting = new WaitingQueue<Pending>(bound.capacity, bound.policy);
    this.meter = new StatusMeter({
      status: options.status,
      warnDrops: (n) => options.warn(`dropped ${n} message${n === 1 ? '' : 's'} because the queue was full (policy ${bound.policy}); the status shows the running total`),
      words: options.words,
      intervalMs: options.statusIntervalMs,
    });
  }

  start(): void {
    this.meter.start();
    if (this.options.graph instanceof Error) {
      this.state = { state: 'failed', error: this.options.graph };
      this.meter.setState('failed');
      return;
    }
    this.options.graph.register(this);
  }

  /** Called by the graph lease on every change of its state. */
  graphState(state: GraphState): void {
    this.state = state;
    if (state.state === 'ready') {
      this.meter.setState('ready', state.graph.deviceLabel);
      for (const p of this.waiting.takeAll()) this.run(state.graph, p);
    } else if (state.state === 'failed') {
      this.meter.setState('failed');
      for (const p of this.waiting.takeAll()) p.done(this.notLoaded(state.error));
    } else {
      this.meter.setState('loading');
    }
  }

  get droppedCount(): number {
    return this.meter.droppedCount;
  }

  onInput(msg: NodeMessage, send: SendFunction, done: DoneFunction): void {
    const pending: Pending = { msg, send, done, arrivedAt: performance.now() };
    if (this.closed) {
      done(new Error('ncs2-infer is stopping; the message was not processed'));
      return;
    }
    const state = this.state;
    if (state.state === 'ready') {
      this.run(state.graph, pending);
      return;
    }
    if (state.state === 'failed') {
      done(this.notLoaded(state.error));
      return;
    }
    const offer = this.waiting.offer(pending);
    if (offer.outcome === 'dropped') {
      this.meter.dropped();
      offer.item.done();
    } else if (offer.outcome === 'rejected') {
      offer.item.done(new QueueFullError(`rejected: ${this.waiting.capacity} messages are already waiting for the model to load (queue capacity of the device config, policy reject); slow the source or raise the capacity`, 'reject'));
    }
  }

  private notLoaded(cause: Error): Error {
    return new Error(`the model is not loaded, so the message was not processed: ${cause.message}`);
  }

  private run(graph: LoadedGraph, p: Pending): void {
    this.inFlight++;
    void this.complete(graph, p).finally(() => {
      if (--this.inFlight === 0 && this.idle) this.idle();
    });
  }

  // Catches everything itself: a rejected promise in an input handler would stop Node-RED.
  private async complete(graph: LoadedGraph, p: Pending): Promise<void> {
    let batch: BatchItem[] | undefined;
    try {
      batch = this.options.split ? readBatch(p.msg) : undefined;
    } catch (err) {
      p.done(err as Error);
      return;
    }
    if (batch) return this.completeSplit(graph, p, batch);
    try {
      const waitedMs = performance.now() - p.arrivedAt;
      const outcome = await runInference(graph.engine, graph.setup, p.msg.payload, p.arrivedAt, waitedMs);
      p.msg.payload = outcome.payload;
      p.msg.inference = outcome.inference;
      this.meter.completed();
      p.send(p.msg);
      p.done();
    } catch (err) {
      if (isPolicyDrop(err)) {
        this.meter.dropped();
        p.done();
      } else {
        p.done(err as Error);
      }
    }
  }

  /**
   * A batch message split back into its items. Each item is submitted on its own and the engine's
   * dynamic batching (enabled on the ncs2-graph) coalesces the ones that fit together into batched
   * runs: a bad item then fails alone, items of different shapes land in different runs, and the
   * engine, which sees every request on the graph, picks the batch size. Each item ends in exactly
   * one output message (its own properties, _msgid included) or one error reported with its own
   * message; the batch message itself then completes with done().
   */
  private async completeSplit(graph: LoadedGraph, p: Pending, items: BatchItem[]): Promise<void> {
    const waitedMs = performance.now() - p.arrivedAt;
    let failed = 0;
    await Promise.all(
      items.map(async (item) => {
        try {
          const outcome = await runInference(graph.engine, graph.setup, item.payload, p.arrivedAt, waitedMs);
          item.msg.payload = outcome.payload;
          item.msg.inference = outcome.inference;
          this.meter.completed();
          p.send(item.msg);
        } catch (err) {
          if (isPolicyDrop(err)) {
            this.meter.dropped();
            return;
          }
          failed++;
          this.reportItem(err as Error, item.msg);
        }
      }),
    );
    // Item errors already reached Catch with the item's message; the batch message itself is done.
    if (failed > 0 && !this.options.itemError) p.done(new Error(`${failed} of ${items.length} batch items failed`));
    else p.done();
  }

  private reportItem(err: Error, msg: NodeMessage): void {
    try {
      this.options.itemError?.(err, msg);
    } catch {
      // A throwing error reporter must not take the other items down with it.
    }
  }

  /**
   * Stops taking messages, ends those still waiting for the model with done(err), leaves the graph
   * (freeing it when `removed`) and resolves once the messages already in the engine have ended.
   */
  async close(removed: boolean): Promise<void> {
    this.closed = true;
    this.meter.stop();
    for (const p of this.waiting.takeAll()) p.done(new Error('ncs2-infer stopped before the model finished loading; the message was not processed'));
    const drained = this.inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.idle = resolve));
    const released = this.options.graph instanceof Error ? Promise.resolve() : this.options.graph.deregister(this, removed);
    await Promise.all([drained, released]);
  }
}
