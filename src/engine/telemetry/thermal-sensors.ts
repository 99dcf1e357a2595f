/**
 * Host temperature sensors on Linux: thermal zones (/sys/class/thermal/thermal_zone*: type, temp)
 * and hwmon chips (/sys/class/hwmon/hwmon*: name, temp*_input, temp*_label), both in millidegrees.
 * VMs and containers usually have neither (this development VM has none): the temperature is then
 * unknown (undefined), never 0, so nobody throttles on a reading that does not exist.
 */
import { readFileSync, readdirSync } from 'fs';
import * as path from 'path';

export interface TemperatureSensor {
  source: 'thermal_zone' | 'hwmon';
  /** Zone type or hwmon chip name (x86_pkg_temp, coretemp, k10temp, cpu-thermal ...). */
  name: string;
  /** hwmon channel label (e.g. 'Package id 0', 'Tctl'), when present. */
  label?: string;
  /** File holding the reading. */
  file: string;
  /** Whether it measures the CPU (package, cores or SoC). */
  cpu: boolean;
}

export interface SensorReading extends TemperatureSensor {
  temperatureC: number | undefined;
}

const CPU_ZONE = /cpu|pkg|soc|acpitz|coretemp|k10temp/i;
const CPU_HWMON = /^(coretemp|k10temp|zenpower|cpu_thermal|cpu-thermal|soc_thermal|acpitz|cpu\d*_thermal)$/i;

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Every temperature sensor under `root` (default '/'). */
export function discoverSensors(root = '/'): TemperatureSensor[] {
  const out: TemperatureSensor[] = [];
  const zones = path.join(root, 'sys/class/thermal');
  for (const entry of entries(zones).sort()) {
    if (!entry.startsWith('thermal_zone')) continue;
    const dir = path.join(zones, entry);
    const type = readText(path.join(dir, 'type'));
    if (type === undefined) continue;
    out.push({ source: 'thermal_zone', name: type, file: path.join(dir, 'temp'), cpu: CPU_ZONE.test(type) });
  }
  const hwmon = path.join(root, 'sys/class/hwmon');
  for (const entry of entries(hwmon).sort()) {
    const dir = path.join(hwmon, entry);
    const name = readText(path.join(dir, 'name'));
    if (name === undefined) continue;
    for (const file of entries(dir).sort()) {
      const m = /^temp(\d+)_input$/.exec(file);
      if (!m) continue;
      const label = readText(path.join(dir, `temp${m[1]}_label`));
      out.push({ source: 'hwmon', name, label, file: path.join(dir, file), cpu: CPU_HWMON.test(name) });
    }
  }
  return out;
}

/** Degrees C from a sysfs millidegree file; undefined when unreadable or implausible. */
export function readSensor(sensor: TemperatureSensor): number | undefined {
  const text = readText(sensor.file);
  if (text === undefined || text === '') return undefined;
  const milli = Number(text);
  // Some drivers report -273 C or absurd values for a missing probe: that is not a reading.
  if (!Number.isFinite(milli) || milli <= -50_000 || milli >= 200_000) return undefined;
  return milli / 1000;
}

export function readSensors(sensors: TemperatureSensor[]): SensorReading[] {
  return sensors.map((s) => ({ ...s, temperatureC: readSensor(s) }));
}

/** Hottest CPU sensor in degrees C, or undefined when the host has none. */
export function hottestCpuTemperature(sensors: TemperatureSensor[]): number | undefined {
  let hottest: number | undefined;
  for (const s of sensors) {
    if (!s.cpu) continue;
    const t = readSensor(s);
    if (t !== undefined) hottest = Math.max(hottest ?? -Infinity, t);
  }
  return hottest;
}
