import type { EventEmitter } from 'events';
import type { Device, NamedTensor, OutputSpec } from '../../devices/device';
import { DeviceError, EngineError } from '../../errors';
import type { DeviceStats } from '../../telemetry/device-stats';
import type { Feeds, TensorData } from '../../tensor';
import { concatFeeds, shapeKey, splitOutputs } from '../batcher';
import type { Stage, StageName } from '../stages';
import type { DeviceRegistry } from './device-registry';
import type { GraphEntry, GraphStore } from './graph-store';
import type { ErrorSink } from './periodic';
import type { Scheduler } from './scheduler';
import { failTask, releaseFeeds, type Task } from './task';
import type { EngineEvents, SubmitOptions, TaskEvent, TaskResult, TaskTimings } from './types';

export interface DispatcherContext {
  devices: DeviceRegistry;
  graphs: GraphStore;
  scheduler: Scheduler;
  stages: Record<StageName, Stage>;
  events: EventEmitter<EngineEvents>;
  /** Pooled memory for gathering a batch's inputs. */
  allocate(type: TensorData['type'], dims: number[]): TensorData;
  maxRetries: number;
  isClosed(): boolean;
  warn: ErrorSink;
}

/**
 * Moves tasks from the graph queues to devices: queues each submission, starts runs (one task or
 * a batch) on the device the scheduler picks, hands each task its rows of the result, and retries
 * a failed run on another device.
 */
export class Dispatcher {
  private nextTaskId = 1;
  private pumping = false;

  constructor(private readonly ctx: DispatcherContext) {}

  /** Queues a checked submission under its graph's policy (the caller validated feeds and devices). */
  submit(g: GraphEntry, feeds: Feeds, batchSize: number, options: SubmitOptions, resolve: (r: TaskResult) => void, reject: (e: Error) => void): void {
    const task: Task = {
      id: this.nextTaskId++,
      graph: g,
      feeds,
      batchSize,
      submittedAt: performance.now(),
      dispatchedAt: 0,
      deviceId: options.deviceId,
      allowed: options.devices,
      tried: new Set(),
      retries: 0,
      settled: false,
      resolve,
      reject,
    };
    g.counters.counts.submitted++;
    if (g.batching.active) task.shapeKey = shapeKey(g.info, feeds) + (options.devices?.join(',') ?? '');
    if (options.deadlineMs !== undefined) g.queue.setDeadline(task, options.deadlineMs, this.ctx.warn);
    if (g.queue.offer(task)) this.pump();
  }

  /**
   * Hands queued tasks to free devices, one task per waiting graph per pass, so a busy graph
   * cannot starve another. Runs on every submission and completion: no allocation here.
   */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const { devices, graphs, scheduler } = this.ctx;
      let progressed = true;
      while (progressed) {
        progressed = false;
        for (const g of graphs.values()) {
          // a batch gathering until the end of this turn: its pump comes then (checking on every
          // submission rescanned the queue, quadratic in the batch size)
          if (g.queue.length === 0 || g.batching.gathering) continue;
          const head = g.queue.tasks[0];
          const device = scheduler.pickDevice(head);
          if (!device) {
            if (g.load.loaded.size < devices.size) graphs.fillPlacement(g);
            if (g.load.loaded.size === 0 && g.load.loading.size === 0) this.failUnrunnable(g);
            // a task restricted to devices that cannot run it would wait forever, and block the tasks behind it
            else if ((head.deviceId || head.allowed) && this.failIfNowhereToRun(head)) progressed = true;
            continue;
          }
          const group = g.batching.takeGroup(g.queue, devices.busyOf(device) >= device.parallelism);
          if (!group) continue;
          this.start(group, device);
          progressed = true;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** No device has the graph and none is loading it: waiting would be forever, so say why now. */
  private failUnrunnable(g: GraphEntry): void {
    const why = this.ctx.graphs.whyUnrunnable(g);
    g.queue.failWaiting(() => new DeviceError(`no device can run ${g.name}: ${why}`, 'none'), { countAsFailed: true });
  }

  /** Fails the head task if none of the devices it may use can run its graph (one was removed, or failed to load it). */
  private failIfNowhereToRun(task: Task): boolean {
    const g = task.graph;
    const why = this.ctx.graphs.whyNotRunnableOn(g, task.deviceId ? [task.deviceId] : task.allowed!);
    if (why === undefined) return false;
    g.queue.tasks.shift();
    g.counters.counts.failed++;
    failTask(task, new DeviceError(`none of the devices this task may use can run ${g.name}: ${why}`, task.deviceId ?? 'none'));
    g.queue.checkDrained();
    return true;
  }

  /**
   * Runs a group of tasks (one, or a batch of compatible ones) as one request on `device`, then
   * hands each task its own rows of the result.
   */
  private start(tasks: Task[], device: Device): void {
    const { devices, stages, scheduler } = this.ctx;
    const g = tasks[0].graph;
    const stats = devices.statsOf(device.id);
    const dispatchedAt = performance.now();
    let samples = 0;
    for (const task of tasks) {
      task.dispatchedAt = dispatchedAt;
      task.tried.add(device.id);
      samples += task.batchSize;
    }
    g.queue.inFlight += tasks.length;
    const busy = devices.startRun(device);
    // service time is compared at equal load and batch size, so slowing down means the device did;
    // the exact size, not a size class: within a power-of-two class a full batch does up to twice
    // the work, which read as a 1.5-2x "slowdown" and put a cool CPU at a quarter share
    const loadKey = `${Math.min(busy, device.parallelism)}|${samples}`;
    stats.onDispatch(tasks.length);
    // a batch is gathered in pooled memory, which moves to the device as it is and comes back to the
    // pool with the results (a fresh buffer per run was most of this path's garbage)
    const feeds = tasks.length === 1 ? tasks[0].feeds : concatFeeds(g.info, tasks.map((t) => t.feeds), samples, this.ctx.allocate);
    const inputs: NamedTensor[] = g.info.inputs.map((i) => ({ name: i.name, ...feeds[i.name] }));
    // counted now: pooled inputs are detached once they move to a worker
    let tensorBytesIn = 0;
    for (const t of inputs) tensorBytesIn += t.data.byteLength;
    const waitMs = dispatchedAt - tasks[0].submittedAt;
    device.run({ graphKey: this.ctx.graphs.cacheKey(g, device.id), inputs, outputs: outputSpecs(g, samples) }).then(
      (result) => {
        if (tasks.length > 1) {
          releaseFeeds(feeds); // only if the device did not move it (moved buffers go home with the results)
          for (const task of tasks) releaseFeeds(task.feeds); // copied into the batch; no retry needs them now
        }
        this.finish(tasks, device);
        scheduler.recordService(device.id, g.id, loadKey, result.inferMs);
        stats.onRun(result.inferMs, samples, g.ops.total, g.load.loaded.get(device.id)?.precision ?? g.info.precision);
        let tensorBytesOut = 0;
        for (const name in result.outputs) tensorBytesOut += result.outputs[name].data.byteLength;
        stats.onTransfer(result, samples, tensorBytesIn, tensorBytesOut);
        stages.infer.record(result.inferMs, waitMs);
        if (result.transfer) {
          stages.toDevice.record(result.transfer.toDevice.ms, result.transfer.toDevice.waitMs);
          stages.fromDevice.record(result.transfer.fromDevice.ms, result.transfer.fromDevice.waitMs);
        }
        g.counters.onRun(samples);
        g.batching.active?.controller.onRun(result.inferMs);
        const parts = tasks.length === 1 ? [result.outputs] : splitOutputs(result.outputs, tasks.map((t) => t.batchSize));
        const done = performance.now();
        const observed = this.ctx.events.listenerCount('task') > 0;
        tasks.forEach((task, i) => {
          if (task.settled) return;
          const timings: TaskTimings = { queueMs: task.dispatchedAt - task.submittedAt, deviceQueueMs: result.deviceQueueMs, inferMs: result.inferMs, totalMs: done - task.submittedAt };
          stats.onTaskDone(timings.totalMs);
          g.counters.latency.record(timings.totalMs);
          g.batching.active?.controller.onTask(timings.totalMs);
          g.counters.counts.completed++;
          task.settled = true;
          if (task.deadlineTimer) clearTimeout(task.deadlineTimer);
          task.resolve({ id: task.id, graphId: g.id, deviceId: device.id, outputs: parts[i], timings, batchSize: samples, retries: task.retries });
          if (observed) this.ctx.events.emit('task', { graphId: g.id, graphName: g.name, deviceId: device.id, timings, batchSize: samples } satisfies TaskEvent);
        });
      },
      (err: Error) => {
        if (tasks.length > 1) releaseFeeds(feeds);
        this.finish(tasks, device);
        stats.onFail(tasks.length);
        stages.infer.record(performance.now() - dispatchedAt, waitMs, false);
        this.retryOrFail(tasks, err, stats);
      },
    )
      // a result the engine could not hand out (a malformed device answer): its tasks fail with
      // the reason instead of waiting forever, and the rejection never escapes to the process
      .catch((err: Error) => {
        for (const task of tasks) {
          if (task.settled) continue;
          g.counters.counts.failed++;
          failTask(task, new EngineError(`${g.name} on ${device.id}: the result could not be handed out (${err.message})`, 'RESULT_FAILED'));
        }
        this.ctx.warn(err, { graph: g.id, graphName: g.name, device: device.id });
      });
  }

  /** A failed run: each task retries on another device when it can (a device fault, inputs intact), else fails. */
  private retryOrFail(tasks: Task[], err: Error, stats: DeviceStats): void {
    const g = tasks[0].graph;
    const retries: Task[] = [];
    for (const task of tasks) {
      if (task.settled) continue;
      // A pooled input that moved to a worker which then died is gone: nothing to retry with.
      const inputsIntact = Object.values(task.feeds).every((t) => t.data.buffer.byteLength > 0);
      const canRetry = err instanceof DeviceError && inputsIntact && task.retries < this.ctx.maxRetries && !task.deviceId && this.ctx.scheduler.hasOtherDevice(task) && !this.ctx.isClosed();
      if (canRetry) {
        task.retries++;
        g.counters.counts.retried++;
        retries.push(task);
      } else {
        g.counters.counts.failed++;
        failTask(task, err);
      }
    }
    if (retries.length) {
      stats.onRetry(retries.length);
      g.queue.requeueFirst(retries); // retries go first: they have waited longest
      this.pump();
    }
  }

  private finish(tasks: Task[], device: Device): void {
    const g = tasks[0].graph;
    g.queue.inFlight -= tasks.length;
    this.ctx.devices.endRun(device);
    g.queue.checkDrained();
    this.pump();
  }
}

/** Output shapes known once the batch size is, so devices can bind pooled memory for them. */
function outputSpecs(g: GraphEntry, batch: number): OutputSpec[] | undefined {
  const specs: OutputSpec[] = [];
  for (const output of g.info.outputs) {
    if (output.type === 'string') return undefined;
    const dims: number[] = [];
    for (const d of output.dims) {
      if (typeof d === 'number' && d > 0) dims.push(d);
      else if (d === g.batchSymbol) dims.push(batch);
      else return undefined; // data-dependent shape: the runtime allocates
    }
    specs.push({ name: output.name, type: output.type, dims });
  }
  return specs;
}
