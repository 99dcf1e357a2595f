import type { Device } from '../../devices/device';
import type { DeviceRegistry } from './device-registry';
import type { GraphEntry } from './graph-store';
import type { Task } from './task';

const SERVICE_EWMA = 0.2;
const IN_FLIGHT_COVER_MS = 2;
const SLOWDOWN_MIN_SAMPLES = 20;

/** A device's measured service time for one graph, overall and per load level. */
interface ServiceRecord {
  ms: number;
  /**
   * Smoothed service time per load level (executors busy and samples), with the best seen: slower
   * than the best at the same load means the device itself slowed down (throttling).
   */
  atLoad: Map<string, { ewma: number; best: number; samples: number }>;
}

/**
 * Chooses the device for each task from measured service times: the one expected to finish it
 * first, keeping enough requests in flight per device to hide the hand-off, and giving hot devices
 * a smaller share. Owns the service-time model (per device, then per graph).
 */
export class Scheduler {
  private readonly service = new Map<string, Map<string, ServiceRecord>>();

  constructor(private readonly devices: DeviceRegistry) {}

  private serviceMs(deviceId: string, graphId: string): number | undefined {
    return this.service.get(deviceId)?.get(graphId)?.ms;
  }

  /** Records a run's time; `loadLevel` names the load it ran under (see Dispatcher.start). */
  recordService(deviceId: string, graphId: string, loadLevel: string, ms: number): void {
    let byGraph = this.service.get(deviceId);
    if (!byGraph) this.service.set(deviceId, (byGraph = new Map()));
    const record = byGraph.get(graphId);
    if (!record) {
      byGraph.set(graphId, { ms, atLoad: new Map([[loadLevel, { ewma: ms, best: ms, samples: 1 }]]) });
      return;
    }
    record.ms += SERVICE_EWMA * (ms - record.ms);
    const atLoad = record.atLoad.get(loadLevel);
    if (!atLoad) {
      record.atLoad.set(loadLevel, { ewma: ms, best: ms, samples: 1 });
      return;
    }
    atLoad.ewma += SERVICE_EWMA * (ms - atLoad.ewma);
    atLoad.samples++;
    // the best counts only once the average has settled
    if (atLoad.samples <= SLOWDOWN_MIN_SAMPLES || atLoad.ewma < atLoad.best) atLoad.best = atLoad.ewma;
  }

  /** How much slower than its best a device now runs the graphs it runs (1 = as fast as ever). */
  slowdown(deviceId: string): number {
    let worst = 1;
    for (const record of this.service.get(deviceId)?.values() ?? []) {
      for (const { ewma, best, samples } of record.atLoad.values()) if (samples >= SLOWDOWN_MIN_SAMPLES) worst = Math.max(worst, ewma / best);
    }
    return worst;
  }

  /** Service times go with their device or graph, so redeploy churn cannot grow them. */
  forgetDevice(deviceId: string): void {
    this.service.delete(deviceId);
  }

  forgetGraph(graphId: string): void {
    for (const byGraph of this.service.values()) byGraph.delete(graphId);
  }

  /**
   * Expected time for `device` to finish one more task of `g`, from measured service times,
   * stretched for a hot device so it gets a smaller share.
   */
  private expectedFinish(device: Device, g: GraphEntry, share: number): number {
    const service = this.serviceMs(device.id, g.id) ?? 0;
    return ((this.devices.busyOf(device) + 1) / device.parallelism) * (service / share);
  }

  /**
   * Requests to keep in flight on a device for a graph: enough to cover the hand-off round trip
   * (about IN_FLIGHT_COVER_MS of work per executor, at least two each), never above the device's
   * cap. Small models need many in flight to keep workers busy; big ones need few, and keeping
   * the rest in the engine's queue lets queue policies (drop-oldest) and other devices act on them.
   */
  inFlightLimit(device: Device, g: GraphEntry): number {
    // batching: one run per executor plus one waiting, so tasks gather in the queue as batches
    if (g.batching.active) return Math.min(device.maxInFlight, device.parallelism * 2);
    const service = this.serviceMs(device.id, g.id);
    const perExecutor = service ? Math.max(2, Math.ceil(IN_FLIGHT_COVER_MS / service)) : 2;
    return Math.min(device.maxInFlight, device.parallelism * perExecutor);
  }

  /** Whether `device` may run `task` at all (loaded there, allowed, not tried while others remain). */
  private eligible(task: Task, device: Device): boolean {
    const loaded = task.graph.load.loaded;
    if (!loaded.has(device.id)) return false;
    if (task.deviceId && task.deviceId !== device.id) return false;
    if (task.allowed && !task.allowed.includes(device.id)) return false;
    return !(task.tried.has(device.id) && task.tried.size < loaded.size);
  }

  /**
   * The device expected to finish the task first. A hot device keeps a share of its slots in
   * proportion to its thermal share, and is passed over while a cooler device that could take the
   * task would finish it sooner even after waiting for a slot: that is what moves work away from it.
   */
  pickDevice(task: Task): Device | undefined {
    let best: Device | undefined;
    let bestCost = Infinity;
    let coolFull = false;
    // Looked up only when a device is down: this runs for every submission.
    let passOverDown: boolean | undefined;
    for (const device of this.devices.values()) {
      if (!this.eligible(task, device)) continue;
      if (device.available?.() === false && (passOverDown ??= this.anyAvailable(task))) continue;
      const share = this.devices.thermalShare(device.id);
      if (share === 0) continue; // paused at its critical temperature
      // full devices first, without a cost: this runs for every submission while they are full
      const limit = Math.max(1, Math.floor(this.inFlightLimit(device, task.graph) * share));
      const busy = this.devices.busyOf(device);
      if (busy >= limit) {
        coolFull ||= share === 1;
        continue;
      }
      const cost = this.expectedFinish(device, task.graph, share);
      if (cost < bestCost || (cost === bestCost && best && busy < this.devices.busyOf(best))) {
        best = device;
        bestCost = cost;
      }
    }
    if (best && coolFull && this.devices.thermalShare(best.id) < 1 && this.coolestFullCost(task) < bestCost) return undefined;
    return best;
  }

  /** Whether an eligible device that is not down exists (most devices never go down: no `available`). */
  private anyAvailable(task: Task): boolean {
    for (const device of this.devices.values()) if (this.eligible(task, device) && device.available?.() !== false) return true;
    return false;
  }

  /** The lowest expected finish among the full, cool devices that could take the task. */
  private coolestFullCost(task: Task): number {
    let lowest = Infinity;
    for (const device of this.devices.values()) {
      if (!this.eligible(task, device)) continue;
      if (this.devices.thermalShare(device.id) !== 1 || this.devices.busyOf(device) < this.inFlightLimit(device, task.graph)) continue;
      lowest = Math.min(lowest, this.expectedFinish(device, task.graph, 1));
    }
    return lowest;
  }

  /** Whether a failed task has a device left to retry on (one it has not tried, and may use). */
  hasOtherDevice(task: Task): boolean {
    for (const id of task.graph.load.loaded.keys()) if (!task.tried.has(id) && this.devices.has(id) && (!task.allowed || task.allowed.includes(id))) return true;
    return false;
  }
}
