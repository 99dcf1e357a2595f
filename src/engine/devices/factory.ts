import * as os from 'os';
import { CpuDevice } from './cpu/cpu-device';
import { SimNcs2Device, type SimNcs2Options } from './sim-ncs2/sim-ncs2-device';
import { RemoteDevice, type RemoteDeviceSpec } from './remote/remote-device';
import type { Device } from './device';
import { ConfigError, InputError } from '../errors';
import { showValue } from '../tensor';

export interface CpuDeviceSpec {
  kind: 'cpu';
  id?: string;
  workers?: number;
  threadsPerWorker?: number;
  maxInFlight?: number;
  affinity?: string;
}

/** A simulated NCS2 stick (plain data only, so a spec can be compared and stored). */
export interface SimNcs2DeviceSpec extends Pick<SimNcs2Options, 'id' | 'usb' | 'port' | 'maxInFlight' | 'timing' | 'thermal'> {
  kind: 'sim-ncs2';
}

export type DeviceSpec = CpuDeviceSpec | SimNcs2DeviceSpec | RemoteDeviceSpec;

/**
 * Worker threads, and onnxruntime threads per worker, are each capped at 4 per core this process
 * may use. Past a few per core they only contend for the same cores, and huge counts do not fail
 * gracefully: 1e9 workers ends V8 with "Fatal process OOM", 1e9 intra-op threads makes onnxruntime
 * throw std::bad_alloc inside the worker.
 */
export const THREADS_PER_CORE_LIMIT = 4;
/** Requests handed to one device at once; each holds its tensors until it answers. */
export const MAX_DEVICE_IN_FLIGHT = 65_536;

export function maxDeviceThreads(): number {
  return os.availableParallelism() * THREADS_PER_CORE_LIMIT;
}

/** Field, limit and what arrived, for a count the device would otherwise try to honour. */
function checkCount(value: unknown, field: string, max: number, why: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigError(`${field} must be a whole number from 1 to ${max}, got ${showValue(value)}`);
  }
  if (value > max) throw new ConfigError(`${field} must be at most ${max} (${why}), got ${value}`);
}

/** Refuses a spec the device could not honour, before any worker or session exists. */
export function checkDeviceSpec(spec: DeviceSpec): void {
  const cores = os.availableParallelism();
  const perCore = `${THREADS_PER_CORE_LIMIT} per core, ${cores} core${cores > 1 ? 's' : ''} here`;
  if (spec.kind === 'cpu') {
    checkCount(spec.workers, 'workers', maxDeviceThreads(), perCore);
    checkCount(spec.threadsPerWorker, 'threads per worker', maxDeviceThreads(), perCore);
  }
  if (spec.kind === 'sim-ncs2' && spec.usb !== undefined && spec.usb !== 2 && spec.usb !== 3) {
    throw new ConfigError(`usb must be 2 or 3 (the USB generation of the simulated port), got ${showValue(spec.usb)}`);
  }
  checkCount(spec.maxInFlight, 'requests in flight', MAX_DEVICE_IN_FLIGHT, 'each holds its tensors until it answers');
}

/** Builds a device from a plain description (what config nodes and the CLI hold). */
export function createDevice(spec: DeviceSpec): Device {
  switch (spec.kind) {
    case 'cpu':
      checkDeviceSpec(spec);
      return new CpuDevice(spec);
    case 'sim-ncs2':
      checkDeviceSpec(spec);
      return new SimNcs2Device(spec);
    case 'remote':
      return new RemoteDevice(spec);
    default:
      throw new InputError(`unknown device kind '${(spec as { kind: string }).kind}'; expected 'cpu', 'sim-ncs2' or 'remote'`);
  }
}
