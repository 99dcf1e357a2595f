import { performance } from 'perf_hooks';
import { QueueFullError, runInference, groupable, TensorGatherer } from '../../src/engine';
import type { InferenceOutcome, QueuePolicy } from '../../src/engine';
import type { GraphLease, GraphState, GraphUser, LoadedGraph } from './graph-lease';
import type { DoneFunction, NodeMessage, NodeStatus, SendFunction } from './red';
import { StatusMeter, type StatusWords } from './status-meter';
import { WaitingQueue } from './waiting-queue';
import { readBatch, type BatchItem } from './batch-message';
import type { InferMessageCounts } from './infer-counters';
import { applyResultExtras, type ResultExtras } from './result-extras';
import { wrapError } from './wrap-error';

/** How long a restarting node still takes messages that were on a wire when the deploy began. */
const WIRE_GRACE_MS = 25;

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
  /**
   * The node's own bound: at most maxInFlight messages in the engine and maxWaiting more held by
   * the node; beyond that the policy applies. Absent: only the device config's queue bounds it.
   */
  backpressure?: Backpressure;
  /** Annotated image and/or crops of the result's boxes (detection presets), per item with split. */
  extras?: ResultExtras;
  /**
   * Takes the messages of a node that is being restarted (closed, not removed): results that
   * finish after close began, and inputs it did not run. A redeploy stops the downstream nodes
   * together with this one, so a result sent by the old instance would reach no one; the node's
   * next instance sends the results and runs the inputs.
   */
  handOver?(message: { result: NodeMessage } | { input: NodeMessage }): void;
}

export interface Backpressure {
  policy: QueuePolicy;
  maxInFlight: number;
  maxWaiting: number;
}

function emptyOutcome(waitedMs: number, arrivedAt: number): InferenceOutcome {
  return { payload: [], inference: { device: '', queueMs: waitedMs, inferMs: 0, totalMs: performance.now() - arrivedAt, batchSize: 0 } };
}

/** A message the queue policy dropped (drop-oldest/drop-newest), as opposed to one that failed. */
function isPolicyDrop(err: unknown): boolean {
  return err instanceof QueueFullError && err.reason === 'dropped';
}

/**
 * What an ncs2-infer node does, without Node-RED: takes messages, holds them (bounded) while the
 * model loads or while the node's own in-flight limit is reached, runs them through the engine,
 * and ends each in exactly one send+done, one done(err), or, for a message the chosen drop policy
 * discarded, a done() counted in the status and in messageCounts().
 */
export class InferController implements GraphUser {
  private state: GraphState = { state: 'idle' };
  private readonly waiting: WaitingQueue<Pending>;
  private readonly meter: StatusMeter;
  private inFlight = 0;
  /** Gathers single-tensor messages into batched runs (graphs with dynamic batching); one per loaded graph. */
  private gatherer: { graph: LoadedGraph; gatherer: TensorGatherer<Pending> } | undefined;
  private idle: (() => void) | undefined;
  private closed = false;
  /** Closing for a restart with a hand-over: results and new inputs go to the next instance. */
  private handingOver = false;
  private readonly counts = { received: 0, answered: 0, failed: 0, dropped: 0, rejected: 0 };

  constructor(private readonly options: InferControllerOptions) {
    const bp = options.backpressure;
    const bound = bp ? { capacity: bp.maxWaiting, policy: bp.policy } : options.graph instanceof Error ? { capacity: 1, policy: 'reject' as const } : options.graph.waitingBound;
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
      this.pump();
    } else if (state.state === 'failed') {
      this.meter.setState('failed');
      for (const p of this.waiting.takeAll()) this.fail(p, this.notLoaded(state.error));
    } else {
      this.meter.setState('loading');
    }
  }

  /** A warning the engine raised about the graph: shown on this node too, where the flow's author looks. */
  warn(message: string): void {
    this.options.warn(message);
  }

  get droppedCount(): number {
    return this.meter.droppedCount;
  }

  /** What became of the input messages so far (see InferMessageCounts). */
  messageCounts(): InferMessageCounts {
    return { ...this.counts, held: this.waiting.length + this.inFlight };
  }

  /** The engine graph id while the model is loaded. */
  get graphId(): string | undefined {
    return this.state.state === 'ready' ? this.state.graph.graphId : undefined;
  }

  onInput(msg: NodeMessage, send: SendFunction, done: DoneFunction): void {
    const pending: Pending = { msg, send, done, arrivedAt: performance.now() };
    this.counts.received++;
    if (this.handingOver) {
      this.handOverInput(pending);
      return;
    }
    if (this.closed) {
      this.fail(pending, new Error('ncs2-infer is stopping; the message was not processed'));
      return;
    }
    const state = this.state;
    if (state.state === 'failed') {
      this.fail(pending, this.notLoaded(state.error));
      return;
    }
    // Without a bound of its own the node hands every message to the engine as soon as the model is loaded.
    const bp = this.options.backpressure;
    if (state.state === 'ready' && (!bp || (this.inFlight < bp.maxInFlight && this.waiting.length === 0))) {
      this.run(state.graph, pending, 0);
      return;
    }
    const offer = this.waiting.offer(pending);
    if (offer.outcome === 'dropped') this.drop(offer.item);
    else if (offer.outcome === 'rejected') this.fail(offer.item, this.refusal());
  }

  private refusal(): QueueFullError {
    const bp = this.options.backpressure;
    const loading = this.state.state === 'ready' ? '' : ' while the model loads';
    if (!bp) {
      return new QueueFullError(`rejected: ${this.waiting.capacity} messages are already waiting for the model to load (queue capacity of the device config, policy reject); slow the source or raise the capacity`, 'reject');
    }
    return new QueueFullError(
      `rejected: this ncs2-infer node already holds its limit of ${bp.maxInFlight} messages in flight and ${bp.maxWaiting} waiting${loading} (policy reject); ` +
        'slow the source, raise "in flight" or "waiting" on the node, or choose drop-oldest to keep only the newest messages',
      'reject',
    );
  }

  /** Hands waiting messages to the engine while the node's in-flight limit allows. */
  private pump(): void {
    if (this.state.state !== 'ready') return;
    const max = this.options.backpressure?.maxInFlight ?? Infinity;
    while (this.inFlight < max) {
      const next = this.waiting.take();
      if (!next) return;
      this.run(this.state.graph, next, performance.now() - next.arrivedAt);
    }
  }

  /** Sends a result, or hands it to the node's next instance while closing for a restart. */
  private emit(p: Pending, msg: NodeMessage): void {
    if (this.handingOver) this.options.handOver!({ result: msg });
    else p.send(msg);
  }

  /** The next instance runs it; for this instance the message has ended (counted as answered). */
  private handOverInput(p: Pending): void {
    this.options.handOver!({ input: p.msg });
    this.answer(p);
  }

  private answer(p: Pending): void {
    this.counts.answered++;
    p.done();
  }

  private drop(p: Pending): void {
    this.counts.dropped++;
    this.meter.dropped();
    p.done();
  }

  private fail(p: Pending, err: Error): void {
    if (err instanceof QueueFullError) this.counts.rejected++;
    else this.counts.failed++;
    p.done(err);
  }

  private notLoaded(cause: Error): Error {
    return wrapError(`the model is not loaded, so the message was not processed: ${cause.message}`, cause);
  }

  /** `waitedMs`: how long the message was held by the node before this. */
  private run(graph: LoadedGraph, p: Pending, waitedMs: number): void {
    this.inFlight++;
    const payload = p.msg.payload;
    if (!this.options.split && !this.options.extras && groupable(graph.setup, graph.engine, payload)) {
      this.gathererFor(graph).add(p, payload, p.arrivedAt, waitedMs);
      return;
    }
    void this.complete(graph, p).finally(() => this.settled(1));
  }

  private settled(messages: number): void {
    this.inFlight -= messages;
    if (!this.closed) this.pump();
    if (this.inFlight === 0 && this.idle) this.idle();
  }

  private gathererFor(graph: LoadedGraph): TensorGatherer<Pending> {
    if (this.gatherer?.graph !== graph) {
      // messages gathered for the graph before a reload go to it now, not after it may be let go
      this.gatherer?.gatherer.flushAll();
      const gatherer = new TensorGatherer<Pending>(graph.engine, graph.setup, (p, outcome) => {
        this.conclude(graph, p, outcome);
        this.settled(1);
      });
      this.gatherer = { graph, gatherer };
    }
    return this.gatherer.gatherer;
  }

  private conclude(graph: LoadedGraph, p: Pending, outcome: InferenceOutcome | Error): void {
    if (outcome instanceof Error) {
      if (isPolicyDrop(outcome)) this.drop(p);
      else if (!this.retriedLater(graph, p)) this.fail(p, outcome);
      return;
    }
    p.msg.payload = outcome.payload;
    p.msg.inference = outcome.inference;
    try {
      this.meter.completed();
      this.emit(p, p.msg);
      this.answer(p);
    } catch (err) {
      // as in complete(): a throw here must not leave the other messages of the group unanswered
      this.fail(p, err as Error);
    }
  }

  // Catches everything itself: a rejected promise in an input handler would stop Node-RED.
  private async complete(graph: LoadedGraph, p: Pending): Promise<void> {
    let batch: BatchItem[] | undefined;
    try {
      batch = this.options.split ? readBatch(p.msg) : undefined;
    } catch (err) {
      this.fail(p, err as Error);
      return;
    }
    if (batch) return this.completeSplit(graph, p, batch);
    try {
      const waitedMs = performance.now() - p.arrivedAt;
      const input = p.msg.payload;
      // No regions from a first stage: an empty result, so the flow still hears about it.
      const empty = Array.isArray(input) && input.length === 0;
      const outcome = empty ? emptyOutcome(waitedMs, p.arrivedAt) : await runInference(graph.engine, graph.setup, input, p.arrivedAt, waitedMs);
      p.msg.payload = outcome.payload;
      p.msg.inference = outcome.inference;
      if (this.options.extras && !empty) await applyResultExtras(this.options.extras, p.msg, input);
      this.meter.completed();
      this.emit(p, p.msg);
      this.answer(p);
    } catch (err) {
      if (isPolicyDrop(err)) this.drop(p);
      else if (!this.retriedLater(graph, p)) this.fail(p, err as Error);
    }
  }

  /**
   * A message that failed because its graph was freed under it (its graph config removed in the
   * same redeploy) while this node closes for a restart: the next instance runs it on its graph.
   */
  private retriedLater(graph: LoadedGraph, p: Pending): boolean {
    if (!this.handingOver || graph.engine.getGraph(graph.graphId)) return false;
    this.handOverInput(p);
    return true;
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
          if (this.options.extras) await applyResultExtras(this.options.extras, item.msg, item.payload);
          this.meter.completed();
          this.emit(p, item.msg);
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
    if (failed > 0 && !this.options.itemError) this.fail(p, new Error(`${failed} of ${items.length} batch items failed`));
    else this.answer(p);
  }

  private reportItem(err: Error, msg: NodeMessage): void {
    try {
      this.options.itemError?.(err, msg);
    } catch {
      // A throwing error reporter must not take the other items down with it.
    }
  }

  /**
   * Stops taking messages and ends those still waiting for the model: handed to the next instance
   * on a restart (with handOver), otherwise with done(err). Resolves once the messages already in
   * the engine have ended, then leaves the graph (freeing it when `removed`). Messages gathering
   * for a batch go to the engine first.
   */
  async close(removed: boolean): Promise<void> {
    this.closed = true;
    this.handingOver = !removed && this.options.handOver !== undefined;
    this.meter.stop();
    const why = this.state.state === 'ready' ? 'the message reached the model' : 'the model finished loading';
    for (const p of this.waiting.takeAll()) {
      if (this.handingOver) this.handOverInput(p);
      else this.fail(p, new Error(`ncs2-infer stopped before ${why}; the message was not processed`));
    }
    this.gatherer?.gatherer.flushAll();
    // The graph is held until every message given to it has ended: one released while a message
    // is between preprocessing and submit would fail that message.
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    // Node-RED delivers a message on a wire a turn after it is sent, and drops it once this node's
    // close has resolved: an upstream node that sent just before it stopped would lose it. A short
    // wait on a restart lets such messages arrive, and they are handed over like the others.
    if (this.handingOver) await new Promise<void>((resolve) => setTimeout(resolve, WIRE_GRACE_MS));
    if (!(this.options.graph instanceof Error)) await this.options.graph.deregister(this, removed);
  }
}
