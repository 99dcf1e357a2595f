import { discoverSensors, hottestCpuTemperature, type TemperatureSensor } from './thermal-sensors';

let sensors: TemperatureSensor[] | undefined;

/**
 * Hottest CPU sensor (Linux thermal zones and hwmon) in degrees C, or undefined when the host
 * exposes none (like this VM). Sensors are found once; readings are fresh on every call.
 */
export function readCpuTemperature(): number | undefined {
  sensors ??= discoverSensors('/');
  return hottestCpuTemperature(sensors);
}
