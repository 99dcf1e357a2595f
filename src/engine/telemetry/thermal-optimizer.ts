/**
 * ThermalOptimizer: temperature, headroom and a throttle decision per engine device, from each
 * device's own telemetry (the CPU's Linux sensors, a simulated stick's thermal model, and, once a
 * runtime bridge exists, a stick's DEVICE_THERMAL). An unknown temperature stays unknown:
 * headroom is undefined and it is no reason to throttle, but a device that says it throttles
 * (a throttle level > 0) should be throttled whatever its temperature.
 */
import type { Device, DeviceTelemetry } from '../devices/device';
import { InputError } from '../errors';

export interface ThermalDeviceSource {
  listDevices(): Device[];
}

export interface DeviceThermalReading {
  deviceId: string;
  kind: string;
  temperatureC: number | undefined;
  throttleLevel: number | undefined;
  simulated: boolean;
  /** targetC - temperature (negative: above target); undefined when the temperature is unknown. */
  headroomC: number | undefined;
  throttle: boolean;
  reason: string;
}

export const DEFAULT_TARGET_TEMP_C = 70;

export class ThermalOptimizer {
  private readonly source: ThermalDeviceSource;

  constructor(source: ThermalDeviceSource | Device[], private readonly options: { targetTempC?: number } = {}) {
    this.source = Array.isArray(source) ? { listDevices: () => source } : source;
  }

  private device(deviceId: string): Device {
    const devices = this.source.listDevices();
    const d = devices.find((x) => x.id === deviceId);
    if (!d) throw new InputError(`no device '${deviceId}'; expected one of ${devices.map((x) => x.id).join(', ') || '(none registered)'}`);
    return d;
  }

  private telemetry(d: Device): DeviceTelemetry {
    try {
      return d.telemetry();
    } catch {
      // a device whose sensor read fails has an unknown temperature, not a broken optimizer
      return { simulated: d.info.simulated };
    }
  }

  /** Degrees C, or undefined when the device has no readable sensor. */
  getDeviceTemperature(deviceId: string): number | undefined {
    return this.telemetry(this.device(deviceId)).temperatureC;
  }

  /** Degrees below the target (negative above it); undefined when the temperature is unknown. */
  getThermalHeadroom(deviceId: string, targetTempC = this.options.targetTempC ?? DEFAULT_TARGET_TEMP_C): number | undefined {
    const t = this.getDeviceTemperature(deviceId);
    return t === undefined ? undefined : targetTempC - t;
  }

  shouldThrottle(deviceId: string, targetTempC = this.options.targetTempC ?? DEFAULT_TARGET_TEMP_C): boolean {
    return this.reading(this.device(deviceId), targetTempC).throttle;
  }

  private reading(d: Device, targetC: number): DeviceThermalReading {
    const t = this.telemetry(d);
    const temperatureC = t.temperatureC;
    const level = t.throttleLevel;
    let throttle = false;
    let reason = 'temperature unknown (no sensor): not a reason to throttle';
    if (level !== undefined && level > 0) {
      throttle = true;
      reason = `the device reports throttle level ${level}`;
    } else if (temperatureC !== undefined) {
      throttle = temperatureC >= targetC;
      reason = throttle ? `${temperatureC.toFixed(1)} C at or above the target ${targetC} C` : `${temperatureC.toFixed(1)} C, ${(targetC - temperatureC).toFixed(1)} C below the target ${targetC} C`;
    }
    return {
      deviceId: d.id,
      kind: d.kind,
      temperatureC,
      throttleLevel: level,
      simulated: t.simulated,
      headroomC: temperatureC === undefined ? undefined : targetC - temperatureC,
      throttle,
      reason,
    };
  }

  /** Every device's reading, hottest first (unknown temperatures last). */
  readings(targetTempC = this.options.targetTempC ?? DEFAULT_TARGET_TEMP_C): DeviceThermalReading[] {
    return this.source
      .listDevices()
      .map((d) => this.reading(d, targetTempC))
      .sort((a, b) => (b.temperatureC ?? -Infinity) - (a.temperatureC ?? -Infinity));
  }

  /** The hottest device with a known temperature. */
  hottest(targetTempC?: number): DeviceThermalReading | undefined {
    return this.readings(targetTempC).find((r) => r.temperatureC !== undefined);
  }
}
