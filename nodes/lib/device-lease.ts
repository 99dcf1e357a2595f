import { getStickRegistry } from '../../src/engine';
import type { InferenceEngine, StickListing } from '../../src/engine';
import { MEMBER_KINDS, poolDevices, type PoolDevice, type PoolMember, type PoolSettings } from './pool';
import { SharedLease } from './shared-lease';
import { forwardWarnings } from './engine-warnings';

/** One member of the pool as a user sees it (the admin endpoint, ncs2-stats rows). */
export interface MemberStatus {
  /** 1-based position in the device config's list. */
  position: number;
  kind: PoolMember['kind'];
  /** The engine devices it stands for (a sim-ncs2 member with a count: one per stick). */
  deviceIds: string[];
  state: 'serving' | 'removed' | 'unavailable' | 'failed' | 'idle';
  reason?: string;
}

/**
 * An ncs2-device config node's hold on its pool's engine devices, shared by its users in the
 * manner of Node-RED's MQTT broker node: the first user acquires every member's devices, the last
 * one to leave releases them (freed at once when removed, otherwise kept idle so a redeploy finds
 * them). Nothing starts until some graph uses the config node, so an unused one costs no worker
 * threads. A member the engine refuses is shown and the others serve.
 */
export class DeviceLease extends SharedLease<object> {
  private engine: InferenceEngine | undefined;
  private stopWarnings: (() => void) | undefined;
  /** Every engine device the pool stands for, in member order. */
  readonly devices: PoolDevice[];
  /** Devices the engine refused when acquired, with why (by device id). */
  private readonly refused = new Map<string, string>();
  private acquired: string[] = [];

  constructor(
    private readonly getEngine: () => InferenceEngine,
    /** The config node's id: device ids derive from it, unique per config node and stable across redeploys. */
    configId: string,
    readonly settings: PoolSettings,
    /** What status lines show: the config node's name, or the member kinds. */
    readonly label: string,
    /** Where the engine's warnings about the pool's devices go (the config node's node.warn). */
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    super();
    this.devices = poolDevices(configId, settings);
  }

  /** The devices acquired from the engine (what graphs load on). */
  get deviceIds(): string[] {
    return [...this.acquired];
  }

  /** Whether a device id belongs to this pool (acquired or not). */
  owns(deviceId: string): boolean {
    return this.devices.some((d) => d.spec.id === deviceId);
  }

  /** The member a device stands for. */
  memberOf(deviceId: string): PoolDevice | undefined {
    return this.devices.find((d) => d.spec.id === deviceId);
  }

  /** Adds a user; the first one acquires the pool's devices (throws when the engine refuses every one). */
  register(user: object): void {
    if (this.closed) throw new Error(`device config ${this.label} is closed (being redeployed or deleted)`);
    if (!this.engine) {
      const engine = this.getEngine();
      this.refused.clear();
      this.acquired = [];
      for (const d of this.devices) {
        try {
          engine.acquireDevice(d.spec);
          this.acquired.push(d.spec.id);
        } catch (err) {
          const why = (err as Error).message;
          this.refused.set(d.spec.id, why);
          this.warn(`member ${d.position} (${d.member.kind}) cannot start: ${why}; the other members serve`);
        }
      }
      if (this.settings.members.some((m) => m.kind === 'usb')) void getStickRegistry().start();
      if (this.acquired.length === 0 && this.refused.size > 0) {
        throw new Error(`no member of device config ${this.label} could start: ${[...this.refused.entries()].map(([id, why]) => `${id}: ${why}`).join('; ')}`);
      }
      this.engine = engine;
      this.stopWarnings = forwardWarnings(engine, (about) => about.device !== undefined && this.owns(about.device), this.warn);
    }
    this.users.add(user);
  }

  /** Each member's state now: serving, removed (a stick pulled), unavailable (why), failed (why). */
  members(): MemberStatus[] {
    const engine = this.engine;
    const usb = (): StickListing => {
      const registry = getStickRegistry();
      return { status: registry.status, sticks: registry.listSticks() };
    };
    return this.settings.members.map((member, index) => {
      const position = index + 1;
      const ids = this.devices.filter((d) => d.position === position).map((d) => d.spec.id);
      const base = { position, kind: member.kind, deviceIds: ids };
      const unavailable = MEMBER_KINDS[member.kind].unavailable?.(member, usb);
      if (unavailable) return { ...base, state: 'unavailable', reason: unavailable };
      const refused = ids.filter((id) => this.refused.has(id));
      if (refused.length > 0) return { ...base, state: 'failed', reason: refused.map((id) => `${id}: ${this.refused.get(id)}`).join('; ') };
      if (!engine) return { ...base, state: 'idle' };
      const gone = ids.filter((id) => !engine.getDevice(id));
      if (gone.length === ids.length) return { ...base, state: 'removed', reason: `${gone.join(', ')} left the engine (unplugged or closed)` };
      return gone.length ? { ...base, state: 'serving', reason: `${gone.join(', ')} left the engine (unplugged or closed)` } : { ...base, state: 'serving' };
    });
  }

  protected override release(removed: boolean): Promise<void> {
    const engine = this.engine;
    const ids = this.acquired;
    this.engine = undefined;
    this.acquired = [];
    this.stopWarnings?.();
    this.stopWarnings = undefined;
    if (!engine) return Promise.resolve();
    return Promise.all(ids.map((id) => engine.releaseDevice(id, { free: removed }))).then(() => undefined);
  }
}
