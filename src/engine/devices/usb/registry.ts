/**
 * NCS2 discovery over USB with the `usb` package (v3, WebUSB-style API), and the registry of
 * sticks that attach/detach events keep current.
 *
 * Hazards of usb v3 this module is built around:
 * - where /sys/bus/usb is missing (this VM, most containers) getDevices() rejects, and adding a
 *   'connect' listener makes the package call the native device list again without a catch: an
 *   unhandled rejection, which ends Node-RED. So the registry lists first and only listens when
 *   listing worked; a host without USB access is reported once as 'no USB access' and never
 *   retried in a loop.
 * - an exception thrown by a 'connect'/'disconnect' listener surfaces as an uncaught exception.
 *   Our listeners catch everything, and subscribers of this registry are called one by one with
 *   their errors caught and reported as 'warning' events.
 * The usb module is injected (tests use fakes) and loaded lazily, so a host where its native
 * binding cannot load still gets a clean status instead of a failed require at startup.
 */
import { EventEmitter } from 'events';
import { hex4, stickFirmware, type Firmware } from './ids';

/** The part of a usb v3 device the registry reads. */
export interface UsbDeviceLike {
  vendorId: number;
  productId: number;
  /** Bus id (usb v3: e.g. '1' or '001'). */
  bus?: string;
  /** Port chain from the root hub (usb v3: e.g. [1, 4]). */
  ports?: number[];
  address?: number;
  speed?: string;
  serialNumber?: string | null;
}

export interface UsbConnectionEventLike {
  device: UsbDeviceLike;
}

/** The part of usb v3's WebUSB object the registry uses. */
export interface UsbLike {
  getDevices(): Promise<UsbDeviceLike[]>;
  addEventListener(type: 'connect' | 'disconnect', listener: (ev: UsbConnectionEventLike) => void): void;
  removeEventListener(type: 'connect' | 'disconnect', listener: (ev: UsbConnectionEventLike) => void): void;
}

export const NO_RUNTIME_STATE = 'found, no NCS2 runtime installed';
export type StickState = typeof NO_RUNTIME_STATE | 'simulated';

export interface StickRecord {
  /** USB path: bus-port chain as Linux names it in sysfs (e.g. '1-1.4'); 'sim-N' for simulated sticks. */
  path: string;
  vendorId: number;
  productId: number;
  /** 'vvvv:pppp' in hex. */
  ids: string;
  firmware: Firmware;
  state: StickState;
  /** Whether the engine may schedule work on it (never for a stick without a runtime). */
  schedulable: boolean;
  usb: 2 | 3 | undefined;
  speed?: string;
  serialNumber?: string;
  simulated: boolean;
  /** The engine device bound to this stick, if any (simulated sticks). */
  deviceId?: string;
  attachedAt: number;
}

export type RegistryState = 'not started' | 'starting' | 'watching' | 'listed, no hot-plug events' | 'no USB access' | 'stopped';

export interface RegistryStatus {
  state: RegistryState;
  /** Why, when the state is not 'watching' (a person can act on it). */
  reason?: string;
}

export interface StickRegistryOptions {
  /** The usb module's WebUSB object, or a function returning it (loaded on start). Default: require('usb').usb. */
  usb?: UsbLike | (() => UsbLike);
}

export interface AttachOptions {
  simulated?: boolean;
  deviceId?: string;
}

/** Linux's sysfs name for a device: '<bus>-<port>.<port>...'. */
export function usbPath(d: UsbDeviceLike): string {
  const busNumber = Number.parseInt(d.bus ?? '', 10);
  const bus = Number.isFinite(busNumber) ? String(busNumber) : (d.bus ?? '?');
  if (d.ports && d.ports.length > 0) return `${bus}-${d.ports.join('.')}`;
  return d.address !== undefined ? `${bus}:${d.address}` : bus;
}

function usbGeneration(speed: string | undefined): 2 | 3 | undefined {
  if (speed === 'super' || speed === 'superPlus') return 3;
  if (speed === 'high' || speed === 'full' || speed === 'low') return 2;
  return undefined;
}

function defaultUsb(): UsbLike {
  return (require('usb') as { usb: UsbLike }).usb;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Sticks on this host by USB path. Events: 'attach' (StickRecord), 'detach' (StickRecord),
 * 'status' (RegistryStatus, once per change), 'warning' (Error). Never 'error': an unheard
 * 'error' event would throw.
 */
export class StickRegistry extends EventEmitter {
  private readonly sticks = new Map<string, StickRecord>();
  private statusNow: RegistryStatus = { state: 'not started' };
  private usb: UsbLike | undefined;
  private starting: Promise<RegistryStatus> | undefined;
  private listening = false;
  /** The last warnings (bounded), for when nobody listens to 'warning'. */
  readonly warnings: string[] = [];

  constructor(private readonly options: StickRegistryOptions = {}) {
    super();
  }

  get status(): RegistryStatus {
    return { ...this.statusNow };
  }

  listSticks(): StickRecord[] {
    return [...this.sticks.values()].sort((a, b) => a.path.localeCompare(b.path, undefined, { numeric: true }));
  }

  getStick(path: string): StickRecord | undefined {
    return this.sticks.get(path);
  }

  /**
   * Lists the sticks present and, with `watch` (default), follows attach/detach events. Never
   * rejects: failures become the status. Calling it again returns the status reached.
   */
  start(options: { watch?: boolean } = {}): Promise<RegistryStatus> {
    this.starting ??= this.doStart(options.watch ?? true);
    return this.starting;
  }

  private async doStart(watch: boolean): Promise<RegistryStatus> {
    this.setStatus({ state: 'starting' });
    let usb: UsbLike;
    try {
      const source = this.options.usb ?? defaultUsb;
      usb = typeof source === 'function' ? source() : source;
    } catch (err) {
      return this.setStatus({ state: 'no USB access', reason: `the usb module could not load (${describeError(err)}); NCS2 sticks cannot be discovered on this host` });
    }
    let devices: UsbDeviceLike[];
    try {
      devices = await usb.getDevices();
    } catch (err) {
      return this.setStatus({
        state: 'no USB access',
        reason: `${describeError(err).replace(/^getDevices error: /, '')}; this host (a VM or container without USB pass-through?) cannot see USB devices. Pass the stick through (e.g. docker run --device /dev/bus/usb) to use it`,
      });
    }
    for (const d of devices) this.safely(() => this.handleAttach(d));
    if (!watch) return this.setStatus({ state: 'listed, no hot-plug events', reason: 'listed once (watching was not asked for)' });
    try {
      usb.addEventListener('connect', this.onConnect);
      usb.addEventListener('disconnect', this.onDisconnect);
      this.usb = usb;
      this.listening = true;
    } catch (err) {
      return this.setStatus({ state: 'listed, no hot-plug events', reason: `USB hot-plug events are unavailable (${describeError(err)}); restart to see sticks plugged in later` });
    }
    return this.setStatus({ state: 'watching' });
  }

  /** Stops following events (sticks stay listed as last seen). */
  stop(): void {
    if (this.listening && this.usb) {
      const usb = this.usb;
      this.safely(() => usb.removeEventListener('connect', this.onConnect));
      this.safely(() => usb.removeEventListener('disconnect', this.onDisconnect));
    }
    this.listening = false;
    this.usb = undefined;
    this.starting = undefined;
    if (this.statusNow.state === 'watching' || this.statusNow.state === 'starting') this.setStatus({ state: 'stopped' });
  }

  private readonly onConnect = (ev: UsbConnectionEventLike): void => {
    this.safely(() => this.handleAttach(ev.device));
  };

  private readonly onDisconnect = (ev: UsbConnectionEventLike): void => {
    this.safely(() => this.handleDetach(ev.device));
  };

  /**
   * A device appeared (from a usb 'connect' event, the initial listing, or a simulated stick).
   * Non-NCS2 devices are ignored. Returns the record, if it is a stick.
   */
  handleAttach(device: UsbDeviceLike, options: AttachOptions = {}): StickRecord | undefined {
    const firmware = stickFirmware(device.vendorId, device.productId);
    if (!firmware) return undefined;
    const path = usbPath(device);
    let serialNumber: string | undefined;
    try {
      serialNumber = device.serialNumber ?? undefined;
    } catch {
      // reading the serial needs the device opened on some platforms; it is optional
    }
    const simulated = options.simulated ?? false;
    const record: StickRecord = {
      path,
      vendorId: device.vendorId,
      productId: device.productId,
      ids: `${hex4(device.vendorId)}:${hex4(device.productId)}`,
      firmware,
      // No runtime can drive a real stick in this release (the MYRIAD plugin lives only in
      // OpenVINO <= 2022.3): it is listed, never scheduled, and no Device is made up for it.
      state: simulated ? 'simulated' : NO_RUNTIME_STATE,
      schedulable: simulated,
      usb: usbGeneration(device.speed),
      speed: device.speed,
      serialNumber,
      simulated,
      deviceId: options.deviceId,
      attachedAt: Date.now(),
    };
    this.sticks.set(path, record);
    this.emitSafely('attach', record);
    return record;
  }

  /**
   * A device went away: the one code path for usb 'disconnect' events and simulated unplugs.
   * Returns the record removed, if it was a known stick.
   */
  handleDetach(device: UsbDeviceLike): StickRecord | undefined {
    if (!stickFirmware(device.vendorId, device.productId)) return undefined;
    const path = usbPath(device);
    const record = this.sticks.get(path);
    if (!record) return undefined;
    this.sticks.delete(path);
    this.emitSafely('detach', record);
    return record;
  }

  /** Forgets a stick without a detach event (a simulated stick closed by its owner). */
  forget(path: string): void {
    this.sticks.delete(path);
  }

  private setStatus(status: RegistryStatus): RegistryStatus {
    const changed = status.state !== this.statusNow.state || status.reason !== this.statusNow.reason;
    this.statusNow = status;
    if (changed) this.emitSafely('status', { ...status });
    return { ...status };
  }

  /** Calls each listener on its own, so one that throws neither stops the others nor escapes. */
  private emitSafely(event: string, arg: unknown): void {
    for (const listener of this.listeners(event)) {
      try {
        (listener as (a: unknown) => void).call(this, arg);
      } catch (err) {
        if (event !== 'warning') this.warn(new Error(`a '${event}' listener of the NCS2 registry threw: ${describeError(err)}`));
      }
    }
  }

  private warn(err: Error): void {
    this.warnings.push(err.message);
    if (this.warnings.length > 20) this.warnings.shift();
    this.emitSafely('warning', err);
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.warn(new Error(`NCS2 USB event handling failed: ${describeError(err)}`));
    }
  }
}

let shared: StickRegistry | undefined;

/**
 * The process-wide registry. Simulated sticks register here (their unplug takes the usb path);
 * it watches real USB only once someone calls start().
 */
export function getStickRegistry(): StickRegistry {
  shared ??= new StickRegistry();
  return shared;
}

export interface StickListing {
  status: RegistryStatus;
  sticks: StickRecord[];
}

/** One-shot listing for `ncs2 devices`: no listeners left behind. */
export async function listSticks(options: StickRegistryOptions = {}): Promise<StickListing> {
  const registry = new StickRegistry(options);
  const status = await registry.start({ watch: false });
  const sticks = registry.listSticks();
  registry.stop();
  return { status, sticks };
}
