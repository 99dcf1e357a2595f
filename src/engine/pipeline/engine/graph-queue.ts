import { DeadlineExceededError, QueueFullError } from '../../errors';
import type { GraphCounters } from './engine-stats';
import { guarded, type ErrorSink } from './periodic';
import { failTask, type Task } from './task';
import type { QueuePolicy } from './types';

/**
 * A graph's bounded queue of waiting tasks: its capacity and policy (reject, drop-newest,
 * drop-oldest), deadlines, and the count of its tasks running on devices, so that a release can
 * wait until the graph has drained.
 */
export class GraphQueue {
  /** Waiting tasks, the next to run first. */
  readonly tasks: Task[] = [];
  /** Tasks handed to devices and not finished yet. */
  inFlight = 0;
  private onDrained?: () => void;

  constructor(
    private readonly graphName: string,
    public capacity: number,
    public policy: QueuePolicy,
    private readonly counters: GraphCounters,
  ) {}

  get length(): number {
    return this.tasks.length;
  }

  /**
   * Queues a task. A full queue applies its policy: drop-oldest fails the oldest waiting task and
   * takes the newcomer; reject and drop-newest fail the newcomer (false). Every drop is counted.
   */
  offer(task: Task): boolean {
    if (this.tasks.length >= this.capacity) {
      const policy = this.policy;
      if (policy === 'drop-oldest') {
        const oldest = this.tasks.shift()!;
        this.counters.counts.dropped++;
        failTask(oldest, new QueueFullError(`dropped: queue of ${this.graphName} full (${this.capacity}) and a newer task arrived (policy drop-oldest)`, policy));
      } else {
        if (policy === 'drop-newest') this.counters.counts.dropped++;
        else this.counters.counts.rejected++;
        const verb = policy === 'drop-newest' ? 'dropped' : 'rejected';
        failTask(task, new QueueFullError(`${verb}: queue of ${this.graphName} is full (${this.capacity} waiting; policy ${policy}); raise queue capacity or requests in flight, or slow the source`, policy));
        return false;
      }
    }
    this.tasks.push(task);
    return true;
  }

  /** Puts tasks back at the head: retries have waited longest. */
  requeueFirst(tasks: Task[]): void {
    this.tasks.unshift(...tasks);
  }

  /** Starts a task's deadline: past it the task fails, queued or running (a late result is then ignored). */
  setDeadline(task: Task, deadlineMs: number, onError: ErrorSink): void {
    task.deadline = task.submittedAt + deadlineMs;
    task.deadlineTimer = setTimeout(
      guarded(() => this.expire(task), onError),
      deadlineMs,
    );
    task.deadlineTimer.unref?.();
  }

  private expire(task: Task): void {
    if (task.settled) return;
    const index = this.tasks.indexOf(task);
    if (index >= 0) this.tasks.splice(index, 1);
    this.counters.counts.expired++;
    failTask(task, new DeadlineExceededError(`task ${task.id} on ${this.graphName} missed its deadline (${(task.deadline! - task.submittedAt).toFixed(1)} ms); it was ${index >= 0 ? 'still queued' : 'running'}`));
    this.checkDrained();
  }

  /** Fails every waiting task (each with its own error), counted as failed unless the engine is closing. */
  failWaiting(makeError: () => Error, options: { countAsFailed: boolean }): void {
    for (const task of this.tasks.splice(0)) {
      if (options.countAsFailed) this.counters.counts.failed++;
      failTask(task, makeError());
    }
    this.checkDrained();
  }

  /** Nothing waits and nothing runs. */
  get idle(): boolean {
    return this.tasks.length === 0 && this.inFlight === 0;
  }

  /** Resolves once the queue is idle. */
  drained(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise<void>((resolve) => (this.onDrained = resolve));
  }

  checkDrained(): void {
    if (this.onDrained && this.idle) {
      const drained = this.onDrained;
      this.onDrained = undefined;
      drained();
    }
  }
}
