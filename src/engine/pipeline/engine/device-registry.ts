import type { Device } from '../../devices/device';
import { EngineError } from '../../errors';
import { DeviceStats } from '../../telemetry/device-stats';
import { DEFAULT_THERMAL_LIMITS, ThermalPolicy, type ThermalDecision, type ThermalLimits } from '../thermal-policy';
import { guarded, type ErrorSink } from './periodic';
import type { ThermalEvent } from './types';

/** Removed devices stay visible in statistics (marked removed), the most recent few only. */
const MAX_REMOVED_SHOWN = 8;

/**
 * The registered devices and everything kept per device: reference counts for config nodes,
 * statistics, requests in flight, and thermal policies. Forgetting a device is one call (detach).
 */
export class DeviceRegistry {
  private readonly devices = new Map<string, Device>();
  private readonly refs = new Map<string, { key: string; refs: number; idleTimer?: NodeJS.Timeout }>();
  private readonly stats = new Map<string, DeviceStats>();
  /** Requests in flight per device object (an id can be reused by a replacement device). */
  private readonly busy = new Map<Device, number>();
  private readonly thermal = new Map<string, ThermalPolicy>();
  private readonly removed: string[] = [];

  constructor(
    private readonly thermalDefaults: Partial<ThermalLimits> | undefined,
    private readonly onError: ErrorSink,
  ) {}

  add(device: Device): void {
    if (this.devices.has(device.id)) throw new EngineError(`a device with id '${device.id}' is already registered`, 'DEVICE_EXISTS');
    this.devices.set(device.id, device);
    this.stats.set(device.id, new DeviceStats(device));
    this.busy.set(device, 0);
    if (!this.thermal.has(device.id)) this.setThermalLimits(device.id, {});
  }

  /**
   * Takes a device out of service: no new work reaches it, its statistics stay visible marked
   * removed (the latest few), and its in-flight count goes once closed() is called.
   */
  detach(id: string): Device | undefined {
    const device = this.devices.get(id);
    if (!device) return undefined;
    this.devices.delete(id);
    this.stats.get(id)!.markRemoved();
    this.removed.push(id);
    while (this.removed.length > MAX_REMOVED_SHOWN) {
      const old = this.removed.shift()!;
      if (!this.devices.has(old)) {
        this.stats.delete(old);
        this.thermal.delete(old);
      }
    }
    return device;
  }

  /** A detached device has closed: its runs are over. */
  closed(device: Device): void {
    this.busy.delete(device);
  }

  get(id: string): Device | undefined {
    return this.devices.get(id);
  }

  has(id: string): boolean {
    return this.devices.has(id);
  }

  get size(): number {
    return this.devices.size;
  }

  list(): Device[] {
    return [...this.devices.values()];
  }

  /** The live devices, without copying (the scheduler walks them for every task). */
  values(): IterableIterator<Device> {
    return this.devices.values();
  }

  ids(): string[] {
    return [...this.devices.keys()];
  }

  statsOf(id: string): DeviceStats {
    return this.stats.get(id)!;
  }

  /** Every device with statistics, removed ones included (device is then undefined). */
  *statsEntries(): Generator<{ id: string; stats: DeviceStats; device: Device | undefined; thermal: ThermalDecision }> {
    for (const [id, stats] of this.stats) yield { id, stats, device: this.devices.get(id), thermal: this.thermal.get(id)!.decision };
  }

  resetStats(): void {
    for (const s of this.stats.values()) s.reset();
  }

  // ------------------------------------------------------------ runs in flight

  busyOf(device: Device): number {
    return this.busy.get(device) ?? 0;
  }

  /** One more run on `device`; returns how many it now has. */
  startRun(device: Device): number {
    const busy = this.busy.get(device)! + 1;
    this.busy.set(device, busy);
    return busy;
  }

  endRun(device: Device): void {
    const busy = this.busy.get(device);
    if (busy !== undefined) this.busy.set(device, busy - 1);
  }

  // ------------------------------------------------------------ thermal

  setThermalLimits(deviceId: string, limits: Partial<ThermalLimits>): void {
    this.thermal.set(deviceId, new ThermalPolicy({ ...DEFAULT_THERMAL_LIMITS, ...this.thermalDefaults, ...limits }));
  }

  thermalState(deviceId: string): ThermalDecision | undefined {
    return this.thermal.get(deviceId)?.decision;
  }

  /** Share of work relative to a cool device: 1, the hot share, or 0 (paused at its critical temperature). */
  thermalShare(deviceId: string): number {
    return this.thermal.get(deviceId)!.share;
  }

  /**
   * Reads every device's telemetry into its thermal policy. `slowdown` gives a device's service
   * time over its best; returns the state changes, and whether a device left its critical state.
   */
  readThermal(slowdown: (deviceId: string) => number): { changes: ThermalEvent[]; resumed: boolean } {
    const changes: ThermalEvent[] = [];
    let resumed = false;
    for (const device of this.devices.values()) {
      const policy = this.thermal.get(device.id)!;
      const before = policy.state;
      const t = device.telemetry();
      // Measured on a busy 2-core host, a CPU device's ratio read 1.8-42x at a normal temperature,
      // and the quarter share that followed left one worker idle: only devices that throttle
      // silently are judged by it.
      const decision = policy.update({ temperatureC: t.temperatureC, throttleLevel: t.throttleLevel, slowdown: device.throttlesSilently ? slowdown(device.id) : undefined });
      if (decision.state !== before) {
        changes.push({ deviceId: device.id, temperatureC: t.temperatureC, ...decision, previous: before });
        resumed ||= before === 'critical';
      }
    }
    return { changes, resumed };
  }

  // ------------------------------------------------------------ references (config nodes)

  /** The device registered under `id` with the same spec key, now with one more user; undefined if none. */
  share(id: string, key: string): Device | undefined {
    const held = this.refs.get(id);
    if (!held || held.key !== key || !this.devices.has(id)) return undefined;
    held.refs++;
    clearTimeout(held.idleTimer);
    return this.devices.get(id);
  }

  /** Forgets the references held under `id` (its spec changed); true if there were any. */
  dropRefs(id: string): boolean {
    const held = this.refs.get(id);
    if (!held) return false;
    clearTimeout(held.idleTimer);
    this.refs.delete(id);
    return true;
  }

  holdRef(id: string, key: string): void {
    this.refs.set(id, { key, refs: 1 });
  }

  /**
   * Drops one user. When the last goes, `remove` runs now (`free`) or after `idleMs`, unless the
   * device was acquired again meanwhile.
   */
  releaseRef(id: string, options: { free?: boolean; idleMs: number }, remove: (id: string) => Promise<void>): Promise<void> {
    const held = this.refs.get(id);
    if (!held || held.refs === 0 || --held.refs > 0) return Promise.resolve();
    const free = () => {
      if (this.refs.get(id) !== held || held.refs > 0) return Promise.resolve();
      this.refs.delete(id);
      return remove(id);
    };
    if (options.free) return free();
    clearTimeout(held.idleTimer);
    held.idleTimer = setTimeout(guarded(free, this.onError), options.idleMs);
    held.idleTimer.unref?.();
    return Promise.resolve();
  }

  /** Cancels pending idle removals (the engine closes and closes every device itself). */
  clearRefs(): void {
    for (const held of this.refs.values()) clearTimeout(held.idleTimer);
    this.refs.clear();
  }
}
