import { strict as assert } from 'assert';
import { DeadlineExceededError, EngineClosedError, QueueFullError } from '../../src/engine/errors';
import { GraphCounters } from '../../src/engine/pipeline/engine/engine-stats';
import { GraphQueue } from '../../src/engine/pipeline/engine/graph-queue';
import type { QueuePolicy } from '../../src/engine/pipeline/engine/types';
import { makeTask, type RecordedTask } from './engine-parts';

describe('graph queue', function () {
  function filled(policy: QueuePolicy) {
    const counters = new GraphCounters();
    const queue = new GraphQueue('tiny', 2, policy, counters);
    const tasks = [1, 2, 3].map((id) => makeTask(undefined, { id }));
    const accepted = tasks.map((t) => queue.offer(t));
    return { counters, queue, tasks, accepted };
  }

  it('reject refuses the newcomer, names the policy and counts it as rejected', function () {
    const { counters, queue, tasks, accepted } = filled('reject');
    assert.deepEqual(accepted, [true, true, false]);
    assert.deepEqual(queue.tasks.map((t) => t.id), [1, 2]);
    const err = tasks[2].outcome?.error as QueueFullError;
    assert.ok(err instanceof QueueFullError && /rejected: queue of tiny is full \(2 waiting; policy reject\)/.test(err.message), err?.message);
    assert.deepEqual([counters.counts.rejected, counters.counts.dropped], [1, 0]);
  });

  it('drop-newest fails the newcomer and counts it as dropped', function () {
    const { counters, queue, tasks, accepted } = filled('drop-newest');
    assert.deepEqual(accepted, [true, true, false]);
    assert.deepEqual(queue.tasks.map((t) => t.id), [1, 2]);
    assert.match(tasks[2].outcome!.error!.message, /^dropped: .*policy drop-newest/);
    assert.deepEqual([counters.counts.rejected, counters.counts.dropped], [0, 1]);
  });

  it('drop-oldest fails the oldest waiting task and keeps the newcomer', function () {
    const { counters, queue, tasks, accepted } = filled('drop-oldest');
    assert.deepEqual(accepted, [true, true, true]);
    assert.deepEqual(queue.tasks.map((t) => t.id), [2, 3]);
    assert.match(tasks[0].outcome!.error!.message, /^dropped: .*a newer task arrived \(policy drop-oldest\)/);
    assert.ok(tasks[0].settled && !tasks[1].settled && !tasks[2].settled);
    assert.equal(counters.counts.dropped, 1);
  });

  it('expires a queued task at its deadline: removed, failed, counted, and a drain waiter is told', async function () {
    const counters = new GraphCounters();
    const queue = new GraphQueue('tiny', 4, 'reject', counters);
    const task = makeTask(undefined, { id: 7 });
    queue.offer(task);
    const errors: Error[] = [];
    queue.setDeadline(task, 10, (e) => errors.push(e));
    const drained = queue.drained();
    await drained;
    assert.equal(queue.length, 0);
    assert.ok(task.outcome?.error instanceof DeadlineExceededError);
    assert.match(task.outcome!.error!.message, /task 7 on tiny missed its deadline \(10\.0 ms\); it was still queued/);
    assert.equal(counters.counts.expired, 1);
    assert.deepEqual(errors, []);
  });

  it('a running task past its deadline fails as running; the queue drains only when nothing runs', async function () {
    const queue = new GraphQueue('tiny', 4, 'reject', new GraphCounters());
    const task = makeTask(undefined);
    queue.inFlight = 1; // handed to a device
    queue.setDeadline(task, 5, () => undefined);
    let drained = false;
    void queue.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.match(task.outcome!.error!.message, /it was running/);
    assert.equal(drained, false);
    queue.inFlight = 0;
    queue.checkDrained();
    await new Promise((r) => setImmediate(r));
    assert.equal(drained, true);
  });

  it('failWaiting fails every waiting task with its own error, counted only when asked', function () {
    const counters = new GraphCounters();
    const queue = new GraphQueue('tiny', 4, 'reject', counters);
    const tasks: RecordedTask[] = [1, 2].map((id) => makeTask(undefined, { id }));
    for (const t of tasks) queue.offer(t);
    queue.failWaiting(() => new EngineClosedError(), { countAsFailed: false });
    assert.equal(counters.counts.failed, 0);
    assert.ok(tasks.every((t) => t.outcome?.error instanceof EngineClosedError));
    assert.notEqual(tasks[0].outcome!.error, tasks[1].outcome!.error);
    const more = makeTask(undefined, { id: 3 });
    queue.offer(more);
    queue.failWaiting(() => new Error('no device'), { countAsFailed: true });
    assert.equal(counters.counts.failed, 1);
    assert.equal(queue.length, 0);
  });

  it('requeued retries go ahead of waiting tasks', function () {
    const queue = new GraphQueue('tiny', 4, 'reject', new GraphCounters());
    queue.offer(makeTask(undefined, { id: 1 }));
    queue.requeueFirst([makeTask(undefined, { id: 9, retries: 1 })]);
    assert.deepEqual(queue.tasks.map((t) => t.id), [9, 1]);
  });
});
