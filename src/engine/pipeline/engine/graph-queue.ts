import { DeadlineExceededError, QueueFullError } from '../../errors';
import type { GraphCounters } from './engine-stats';
import { guarded, type ErrorSink } from './periodic';
import { failTask, type Task } from './task';
import type { QueuePolicy } from './types';

/**
 * Bounds of the `wait` policy's line of submissions waiting for room in a full queue: how many may
 * wait, and how many bytes of input tensors they may hold (each distinct buffer counted once, so a
 * loop that submits the same tensor holds its bytes once). Past either, a newcomer is rejected.
 */
export const WAIT_LIMITS = { maxWaiting: 65_536, maxWaitingBytes: 256 * 1024 * 1024 };

/**
 * A graph's bounded queue of waiting tasks: its capacity and policy (reject, drop-newest,
 * drop-oldest, wait), deadlines, and the count of its tasks running on devices, so that a release
 * can wait until the graph has drained.
 */
export class GraphQueue {
  /** Waiting tasks, the next to run first. */
  readonly tasks: Task[] = [];
  /** Under policy wait: submissions that found the queue full, in arrival order (admitWaiting moves them in). */
  private readonly waitLine: Task[] = [];
  /** Input buffers the wait line holds, with how many of its tasks hold each. */
  private readonly heldBuffers = new Map<ArrayBufferLike, { holders: number; bytes: number }>();
  private heldBytes = 0;
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

  /** Submissions waiting for room (policy wait). */
  get waitingForRoom(): number {
    return this.waitLine.length;
  }

  /** Bytes of input tensors the wait line holds. */
  get waitingBytes(): number {
    return this.heldBytes;
  }

  /**
   * Queues a task. A full queue applies its policy: drop-oldest fails the oldest waiting task and
   * takes the newcomer; reject and drop-newest fail the newcomer (false). Every drop is counted.
   */
  offer(task: Task): boolean {
    if (this.tasks.length >= this.capacity || (this.policy === 'wait' && this.waitLine.length > 0)) {
      const policy = this.policy;
      if (policy === 'wait') return this.wait(task);
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

  /**
   * Policy wait: the newcomer waits in line for room, unless the line is at its bound (count or
   * held bytes), which is a real overload and is refused with the numbers.
   */
  private wait(task: Task): boolean {
    const added = this.newBytes(task);
    const { maxWaiting, maxWaitingBytes } = WAIT_LIMITS;
    if (this.waitLine.length >= maxWaiting || this.heldBytes + added > maxWaitingBytes) {
      this.counters.counts.rejected++;
      const mb = (bytes: number) => (bytes / 1048576).toFixed(1);
      failTask(
        task,
        new QueueFullError(
          `rejected: queue of ${this.graphName} is full (${this.capacity} queued) and ${this.waitLine.length} submissions already wait for room holding ${mb(this.heldBytes)} MB of inputs (policy wait allows ${maxWaiting} submissions and ${mb(maxWaitingBytes)} MB); await each submission or slow the source`,
          'wait',
        ),
      );
      return false;
    }
    this.hold(task, 1);
    this.waitLine.push(task);
    return true;
  }

  /** Moves waiting submissions into the queue while it has room (the dispatcher calls this before each pass). */
  admitWaiting(): void {
    const room = this.capacity - this.tasks.length;
    if (room <= 0 || this.waitLine.length === 0) return;
    for (const task of this.waitLine.splice(0, room)) {
      this.hold(task, -1);
      this.tasks.push(task);
    }
  }

  private newBytes(task: Task): number {
    let bytes = 0;
    for (const name in task.feeds) {
      const buffer = task.feeds[name].data.buffer;
      if (!this.heldBuffers.has(buffer)) bytes += buffer.byteLength;
    }
    return bytes;
  }

  /** Counts (+1) or uncounts (-1) the task's input buffers as held by the wait line. */
  private hold(task: Task, delta: 1 | -1): void {
    for (const name in task.feeds) {
      const buffer = task.feeds[name].data.buffer;
      // the size when first held: a buffer moved to a worker meanwhile reads 0 bytes
      const held = this.heldBuffers.get(buffer) ?? { holders: 0, bytes: buffer.byteLength };
      held.holders += delta;
      if (held.holders === 0) {
        this.heldBuffers.delete(buffer);
        this.heldBytes -= held.bytes;
      } else if (held.holders === 1 && delta === 1) {
        this.heldBuffers.set(buffer, held);
        this.heldBytes += held.bytes;
      }
    }
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
    const lineIndex = index >= 0 ? -1 : this.waitLine.indexOf(task);
    if (lineIndex >= 0) {
      this.waitLine.splice(lineIndex, 1);
      this.hold(task, -1);
    }
    const where = index >= 0 ? 'still queued' : lineIndex >= 0 ? 'still waiting for room in the full queue' : 'running';
    this.counters.counts.expired++;
    failTask(task, new DeadlineExceededError(`task ${task.id} on ${this.graphName} missed its deadline (${(task.deadline! - task.submittedAt).toFixed(1)} ms); it was ${where}`));
    this.checkDrained();
  }

  /** Fails every waiting task (each with its own error), counted as failed unless the engine is closing. */
  failWaiting(makeError: () => Error, options: { countAsFailed: boolean }): void {
    for (const task of [...this.tasks.splice(0), ...this.waitLine.splice(0)]) {
      if (options.countAsFailed) this.counters.counts.failed++;
      failTask(task, makeError());
    }
    this.heldBuffers.clear();
    this.heldBytes = 0;
    this.checkDrained();
  }

  /** Nothing waits and nothing runs. */
  get idle(): boolean {
    return this.tasks.length === 0 && this.waitLine.length === 0 && this.inFlight === 0;
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
