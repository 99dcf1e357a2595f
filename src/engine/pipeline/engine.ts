import { EventEmitter } from 'events';
import type { Device } from '../devices/device';
import { createDevice, type DeviceSpec } from '../devices/factory';
import { EngineClosedError, EngineError, InputError } from '../errors';
import { MemoryPool, markPooled, narrowPooled, releasePooled } from '../memory/memory-pool';
import { EventLoopMonitor } from '../telemetry/stats';
import { elementCount, bytesPerElement, viewOf, type Feeds, type TensorData } from '../tensor';
import type { Stage, StageName } from './stages';
import type { ThermalDecision, ThermalLimits } from './thermal-policy';
import { validateFeeds, validateSubmitOptions } from './validate';
import { DeviceRegistry } from './engine/device-registry';
import { Dispatcher } from './engine/dispatcher';
import { engineStats } from './engine/engine-stats';
import { GraphStore } from './engine/graph-store';
import { PeriodicJobs, type WarningSubject } from './engine/periodic';
import { Scheduler } from './engine/scheduler';
import { StageControl } from './engine/stage-control';
import { releaseFeeds } from './engine/task';
import type { EngineEvents, EngineOptions, EngineStats, GraphHandle, GraphOptions, SubmitOptions, TaskResult } from './engine/types';

export type * from './engine/types';
export type { WarningSubject } from './engine/periodic';

/**
 * The engine: graphs, per-graph bounded queues, and a scheduler that hands each task to the
 * device expected to finish it first. One per process (see getEngine); config nodes and scripts
 * share it by reference. This class wires the parts (see ./engine/): the device registry, the
 * graph store, the scheduler, the dispatcher, the stage control and the statistics.
 */
export class InferenceEngine extends EventEmitter<EngineEvents> {
  readonly pool: MemoryPool;
  /** The request stages (preprocess, transfers, infer, postprocess). */
  readonly stages: Record<StageName, Stage>;
  private readonly devices: DeviceRegistry;
  private readonly graphs: GraphStore;
  private readonly scheduler: Scheduler;
  private readonly dispatcher: Dispatcher;
  private readonly control: StageControl;
  private readonly periodic: PeriodicJobs;
  private readonly eventLoop = new EventLoopMonitor();
  private closed = false;
  private readonly warn = (warning: Error, about: WarningSubject = {}): void => void this.emit('warning', warning, about);

  constructor(private readonly options: EngineOptions = {}) {
    super();
    this.pool = new MemoryPool({ deviceId: 'host', poolSizeMb: options.poolSizeMb ?? 512 });
    this.control = new StageControl(options.preprocessCapacity);
    this.stages = this.control.stages;
    this.devices = new DeviceRegistry(options.thermal, this.warn);
    this.scheduler = new Scheduler(this.devices);
    this.graphs = new GraphStore({
      devices: this.devices,
      options,
      warn: this.warn,
      pump: () => this.dispatcher.pump(),
      freed: (g) => this.scheduler.forgetGraph(g.id),
    });
    this.dispatcher = new Dispatcher({
      devices: this.devices,
      graphs: this.graphs,
      scheduler: this.scheduler,
      stages: this.stages,
      events: this,
      allocate: (type, dims) => this.allocateTensor(type, dims),
      maxRetries: options.maxRetries ?? 1,
      isClosed: () => this.closed,
      warn: this.warn,
    });
    for (const d of options.devices ?? []) this.addDevice(d);
    this.eventLoop.start();
    this.periodic = new PeriodicJobs(options.thermalIntervalMs ?? 500, (job, err) => this.warn(new EngineError(`the engine's periodic ${job} failed: ${err.message}`, 'PERIODIC_JOB_FAILED')));
    this.periodic.add('thermal check', () => this.checkThermal());
    this.periodic.add('stage tuning', () => this.tuneStages());
    this.periodic.add('background thread priority', () => this.control.lowerNewBackgroundThreads());
  }

  // ---------------------------------------------------------------- thermal and stages

  /** Limits for one device (the thermal-guard node sets them). */
  setThermalLimits(deviceId: string, limits: Partial<ThermalLimits>): void {
    this.devices.setThermalLimits(deviceId, limits);
  }

  thermalState(deviceId: string): ThermalDecision | undefined {
    return this.devices.thermalState(deviceId);
  }

  /** Reads every device's telemetry and moves work away from hot ones (see ThermalPolicy). */
  checkThermal(): void {
    const { changes, resumed } = this.devices.readThermal((id) => this.scheduler.slowdown(id));
    for (const change of changes) this.emit('thermal', change);
    if (resumed) this.dispatcher.pump();
  }

  /** Re-sizes the preprocess slots from measured stage times (runs periodically; see StageControl.tune). */
  tuneStages(): void {
    this.control.tune(this.devices.values());
  }

  /**
   * Sets a host stage's slots (a benchmark that measured the best value, or a user); `auto`
   * derives them again from the host. The choice shows in getStats().pipeline.concurrency.
   */
  setStageConcurrency(stage: 'preprocess', slots: number | 'auto', reason?: string): void {
    this.control.setConcurrency(stage, slots, reason, this.devices.values());
  }

  /** Runs a request's preprocessing in the preprocess stage's bounded slots. */
  preprocess<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.stages.preprocess.run(fn);
  }

  /** Runs a request's (synchronous) postprocessing, measured as the postprocess stage. */
  postprocess<T>(fn: () => T): T {
    return this.stages.postprocess.runSync(fn);
  }

  // ---------------------------------------------------------------- devices

  addDevice(device: Device): void {
    this.devices.add(device);
    this.graphs.deviceAdded(device);
    this.control.chooseConcurrency(this.devices.values());
    this.emit('devices');
  }

  /**
   * Hot-unplug: the device takes no new work; tasks it was running fail there and are retried on
   * the remaining devices by the normal retry path.
   */
  async removeDevice(id: string): Promise<void> {
    const device = this.devices.detach(id);
    if (!device) return;
    this.graphs.forgetDevice(id);
    this.scheduler.forgetDevice(id);
    await device.close();
    this.devices.closed(device);
    this.control.chooseConcurrency(this.devices.values());
    this.emit('devices');
    this.dispatcher.pump();
  }

  /**
   * Reference-counted devices for config nodes (the MQTT broker node's register/deregister
   * pattern): the first user creates the device, later users with the same spec share it, and a
   * redeploy that releases and re-acquires within `idleDeviceMs` keeps it (and its loaded graphs).
   */
  acquireDevice(spec: DeviceSpec & { id: string }): Device {
    const key = JSON.stringify(spec);
    const shared = this.devices.share(spec.id, key);
    if (shared) return shared;
    if (this.devices.dropRefs(spec.id)) void this.removeDevice(spec.id).catch(this.warn);
    const device = createDevice(spec);
    this.devices.holdRef(spec.id, key);
    this.addDevice(device);
    return device;
  }

  releaseDevice(id: string, options: { free?: boolean } = {}): Promise<void> {
    return this.devices.releaseRef(id, { free: options.free, idleMs: this.options.idleDeviceMs ?? 60_000 }, (gone) => this.removeDevice(gone));
  }

  listDevices(): Device[] {
    return this.devices.list();
  }

  getDevice(id: string): Device | undefined {
    return this.devices.get(id);
  }

  // ---------------------------------------------------------------- graphs

  /**
   * Loads a model (path or bytes) on every device. Loading the same content with the same options
   * again returns the same graph (a cache hit) and adds a reference; release() drops it.
   */
  async loadGraph(model: string | Uint8Array, options: GraphOptions = {}): Promise<GraphHandle> {
    if (this.closed) throw new EngineClosedError();
    return this.graphs.handle(await this.graphs.load(model, options));
  }

  getGraph(id: string): GraphHandle | undefined {
    const g = this.graphs.get(id);
    return g && this.graphs.handle(g);
  }

  /**
   * Drops one reference. When the last one goes, queued and running tasks finish first; then the
   * graph either stays loaded but idle for `idleMs` (a redeploy that loads it again reloads
   * nothing: a cache hit), or, with `{ free: true }` (a node deleted for good), is unloaded now.
   */
  releaseGraph(handle: GraphHandle | string, options: { free?: boolean } = {}): Promise<void> {
    return this.graphs.release(typeof handle === 'string' ? handle : handle.id, options);
  }

  /**
   * The batch cap the graph's dynamic batching uses now (the adaptive controller's choice), or
   * undefined when the graph does not batch. Cheap: callers read it per request.
   */
  batchCap(graph: GraphHandle | string): number | undefined {
    return this.graphs.get(typeof graph === 'string' ? graph : graph.id)?.batching.active?.controller.cap;
  }

  graphCount(): number {
    return this.graphs.size;
  }

  // ---------------------------------------------------------------- tensors

  /**
   * A tensor over pooled memory. Handed to submit(), its buffer moves to the device without a copy
   * (and is no longer usable by the caller); preprocessing writes straight into it.
   */
  allocateTensor(type: TensorData['type'], dims: number[]): TensorData {
    const length = elementCount(dims);
    const buffer = this.pool.acquire(length * bytesPerElement(type));
    const data = viewOf(type, buffer, 0, length);
    markPooled(data, this.pool);
    return { type, dims, data };
  }

  /**
   * The leading part of a tensor from allocateTensor, as a tensor of `dims` over the same pooled
   * memory (a batch gathered in a buffer sized for a full one leaves with the rows it has). The
   * original tensor must not be used afterwards.
   */
  narrowTensor(tensor: TensorData, dims: number[]): TensorData {
    const length = elementCount(dims);
    if (length > tensor.data.length) throw new InputError(`cannot narrow a tensor of ${tensor.data.length} elements to dims [${dims.join(', ')}] (${length} elements)`);
    const data = viewOf(tensor.type, tensor.data.buffer as ArrayBuffer, tensor.data.byteOffset, length);
    narrowPooled(tensor.data, data);
    return { type: tensor.type, dims, data };
  }

  /** Returns a tensor from allocateTensor that will not be submitted. */
  releaseTensor(tensor: TensorData): void {
    releasePooled(tensor.data);
  }

  // ---------------------------------------------------------------- tasks

  submit(graph: GraphHandle | string, feeds: Feeds, options: SubmitOptions = {}): Promise<TaskResult> {
    return new Promise<TaskResult>((resolve, reject) => {
      const refuse = (err: Error) => {
        releaseFeeds(feeds);
        reject(err);
      };
      if (this.closed) return refuse(new EngineClosedError());
      const g = this.graphs.get(typeof graph === 'string' ? graph : graph.id);
      if (!g) return refuse(new InputError(`the model was unloaded (the flow was redeployed or the graph config removed): graph ${typeof graph === 'string' ? graph : graph.id} is no longer loaded`));
      let batchSize: number;
      try {
        batchSize = validateFeeds(g.info, feeds);
        validateSubmitOptions(options);
      } catch (err) {
        g.counters.counts.rejected++;
        return refuse(err as Error);
      }
      if (options.deviceId && !this.devices.has(options.deviceId)) {
        return refuse(new InputError(`device '${options.deviceId}' is not registered; expected one of ${this.devices.ids().join(', ') || '(none)'}`));
      }
      // a task only some devices may run, none of which can: refused now, not left to block the queue
      const restricted = options.deviceId ? [options.deviceId] : options.devices;
      const why = restricted && this.graphs.whyNotRunnableOn(g, restricted);
      if (why) {
        g.counters.counts.rejected++;
        return refuse(new InputError(`none of the devices this task may use can run ${g.name}: ${why}`));
      }
      this.dispatcher.submit(g, feeds, batchSize, options, resolve, reject);
    });
  }

  // ---------------------------------------------------------------- statistics

  getStats(): EngineStats {
    return engineStats({ devices: this.devices, graphs: this.graphs, control: this.control, pool: this.pool, eventLoop: this.eventLoop, targetTops: this.options.targetTops });
  }

  resetStats(): void {
    this.devices.resetStats();
    this.graphs.resetStats();
    this.eventLoop.reset();
    this.control.resetStats();
    this.pool.resetStats();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.periodic.stop();
    this.devices.clearRefs();
    for (const g of this.graphs.values()) g.queue.failWaiting(() => new EngineClosedError('the engine closed before this task ran'), { countAsFailed: false });
    await Promise.all(this.devices.list().map((d) => d.close()));
    this.graphs.clear();
    this.pool.clear();
    this.eventLoop.stop();
  }
}
