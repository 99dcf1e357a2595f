import { InputError } from '../../errors';
import type { ModelInfo } from '../../graph/model-info';
import { BatchController, DEFAULT_BATCHING, unbatchableReason, type BatchingOptions } from '../batcher';
import type { GraphQueue } from './graph-queue';
import { guarded, type ErrorSink } from './periodic';
import type { Task } from './task';

/**
 * A graph's dynamic batching: which queued tasks leave together, and when a short batch waits for
 * batch-mates (a timer, or the end of the event-loop turn) before the queue is pumped again.
 */
export class GraphBatching {
  /** Set while batching is on: its options and the adaptive controller choosing the cap and delay. */
  active?: { options: Required<BatchingOptions>; controller: BatchController };
  /** Why batching was asked for but is off (a fixed batch dimension). */
  unbatchedReason?: string;
  private batchTimer?: NodeJS.Timeout;
  /** A short batch gathering until the end of this event-loop turn (see takeGroup), and that turn's end. */
  private gatherImmediate?: NodeJS.Immediate;
  private gatherDue = false;

  constructor(
    private readonly repump: () => void,
    private readonly onError: ErrorSink,
  ) {}

  /** Turns batching on or off; returns a warning when it was asked for but the model cannot batch. */
  configure(info: ModelInfo, batching: BatchingOptions | boolean | undefined, graphName: string): Error | undefined {
    this.active = undefined;
    this.unbatchedReason = undefined;
    if (!batching) return undefined;
    const reason = unbatchableReason(info);
    if (reason) {
      this.unbatchedReason = `runs unbatched: ${reason}`;
      return new InputError(`${graphName} ${this.unbatchedReason}`);
    }
    const options = { ...DEFAULT_BATCHING, ...(batching === true ? {} : batching) };
    this.active = { options, controller: new BatchController(options) };
    return undefined;
  }

  /** A batch is gathering until the end of this turn: its pump comes then. */
  get gathering(): boolean {
    return this.gatherImmediate !== undefined;
  }

  /**
   * The tasks to run next: the head of the queue, plus (when batching) compatible tasks behind it
   * up to the batch cap. Undefined means "wait for batch-mates" (a timer re-pumps).
   * `deviceSaturated`: every executor of the chosen device already has a run.
   */
  takeGroup(queue: GraphQueue, deviceSaturated: boolean): Task[] | undefined {
    const tasks = queue.tasks;
    const first = tasks[0];
    const batching = this.active;
    if (!batching || first.retries > 0 || first.deviceId) return [tasks.shift()!];
    const cap = batching.controller.cap;
    const picked: number[] = [];
    let samples = 0;
    // bounded scan: a queue of other shapes must not make every dispatch walk the whole queue
    for (let i = 0; i < tasks.length && i < cap * 4 && samples < cap; i++) {
      const t = tasks[i];
      if (t.retries > 0 || t.deviceId || t.shapeKey !== first.shapeKey) continue;
      if (picked.length && samples + t.batchSize > cap) continue;
      picked.push(i);
      samples += t.batchSize;
    }
    const waitMs = batching.controller.delayMs - (performance.now() - first.submittedAt);
    if (samples < cap && waitMs > 0) {
      if (!this.batchTimer) {
        this.batchTimer = setTimeout(
          guarded(() => {
            this.batchTimer = undefined;
            this.repump();
          }, this.onError),
          waitMs,
        );
        this.batchTimer.unref?.();
      }
      return undefined;
    }
    // Another run would only wait behind the device's busy executors, so a short batch gathers
    // until the end of this event-loop turn (when the device hands runs over anyway) instead of
    // leaving with the first task resubmitted after a result, which split the load into runs of
    // 1-2 samples alternating with full ones.
    if (samples < cap && !this.gatherDue && deviceSaturated) {
      this.gatherImmediate ??= setImmediate(
        guarded(() => {
          this.gatherImmediate = undefined;
          this.gatherDue = true;
          this.repump();
        }, this.onError),
      );
      return undefined;
    }
    this.gatherDue = false;
    let group: Task[];
    if (picked[picked.length - 1] === picked.length - 1) group = tasks.splice(0, picked.length);
    else {
      group = picked.map((i) => tasks[i]);
      for (let k = picked.length - 1; k >= 0; k--) tasks.splice(picked[k], 1);
    }
    batching.controller.onBatch(samples, tasks.length);
    return group;
  }

  /** Clears pending re-pumps (the graph is freed or the engine closes). */
  stop(): void {
    clearTimeout(this.batchTimer);
    if (this.gatherImmediate) clearImmediate(this.gatherImmediate);
    this.batchTimer = undefined;
    this.gatherImmediate = undefined;
  }
}
