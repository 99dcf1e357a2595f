import { CpuDevice } from './cpu/cpu-device';
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

export type DeviceSpec = CpuDeviceSpec;

/** Builds a device from a plain description (what config nodes and the CLI hold). */
export function createDevice(spec: DeviceSpec): Device {
  switch (spec.kind) {
    case 'cpu':
      return new CpuDevice(spec);
    default:
      throw new InputError(`unknown device kind '${(spec as { kind: string }).kind}'; expected 'cpu'`);
  }
}
