import type { InferenceEngine } from '../../src/engine';
import type { DeviceSettings } from './settings';
import { SharedLease } from './shared-lease';
import { forwardWarnings } from './engine-warnings';

/**
 * An ncs2-device config node's hold on an engine device, shared by its users in the manner of
 * Node-RED's MQTT broker node: the first user acquires the device, the last one to leave releases
 * it (freed at once when removed, otherwise kept idle so a redeploy finds it). Nothing starts
 * until some graph uses the config node, so an unused one costs no worker threads.
 */
export class DeviceLease extends SharedLease<object> {
  private engine: InferenceEngine | undefined;
  private stopWarnings: (() => void) | undefined;

  constructor(
    private readonly getEngine: () => InferenceEngine,
    /** The engine device id: unique per config node and stable across redeploys. */
    readonly deviceId: string,
    readonly settings: DeviceSettings,
    /** What status lines show: the config node's name, or the device kind. */
    readonly label: string,
    /** Where the engine's warnings about this device go (the config node's node.warn). */
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    super();
  }

  /** Adds a user; the first one acquires the engine device (throws if the engine refuses the spec). */
  register(user: object): void {
    if (this.closed) throw new Error(`device config ${this.label} is closed (being redeployed or deleted)`);
    if (!this.engine) {
      const engine = this.getEngine();
      const { kind, workers, threadsPerWorker, maxInFlight, usb } = this.settings;
      // Unset fields stay out of the spec: the engine compares specs to decide whether a redeploy changed the device.
      const fields = kind === 'sim-ncs2' ? { kind, id: this.deviceId, maxInFlight, usb } : { kind, id: this.deviceId, workers, threadsPerWorker, maxInFlight };
      const spec = JSON.parse(JSON.stringify(fields)) as Parameters<InferenceEngine['acquireDevice']>[0];
      engine.acquireDevice(spec);
      this.engine = engine;
      this.stopWarnings = forwardWarnings(engine, (about) => about.device === this.deviceId, this.warn);
    }
    this.users.add(user);
  }

  protected override release(removed: boolean): Promise<void> {
    const engine = this.engine;
    this.engine = undefined;
    this.stopWarnings?.();
    this.stopWarnings = undefined;
    return engine ? engine.releaseDevice(this.deviceId, { free: removed }) : Promise.resolve();
  }
}
