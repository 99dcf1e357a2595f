import { CpuDevice } from './cpu/cpu-device';
import { SimNcs2Device, type SimNcs2Options } from './sim-ncs2/sim-ncs2-device';
import { RemoteDevice, type RemoteDeviceSpec } from './remote/remote-device';
import type { Device } from './device';
import { InputError } from '../errors';

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

/** Builds a device from a plain description (what config nodes and the CLI hold). */
export function createDevice(spec: DeviceSpec): Device {
  switch (spec.kind) {
    case 'cpu':
      return new CpuDevice(spec);
    case 'sim-ncs2':
      return new SimNcs2Device(spec);
    case 'remote':
      return new RemoteDevice(spec);
    default:
      throw new InputError(`unknown device kind '${(spec as { kind: string }).kind}'; expected 'cpu', 'sim-ncs2' or 'remote'`);
  }
}
