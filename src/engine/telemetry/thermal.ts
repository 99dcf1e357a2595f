import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';

const THERMAL_ROOT = '/sys/class/thermal';
let zones: string[] | undefined;

/** CPU-ish Linux thermal zones (x86_pkg_temp, cpu-thermal, acpitz ...), found once. */
function cpuZones(): string[] {
  if (zones) return zones;
  zones = [];
  try {
    for (const entry of readdirSync(THERMAL_ROOT)) {
      if (!entry.startsWith('thermal_zone')) continue;
      const dir = path.join(THERMAL_ROOT, entry);
      try {
        const type = readFileSync(path.join(dir, 'type'), 'utf8').trim();
        if (/cpu|pkg|soc|acpitz|coretemp|k10temp/i.test(type)) zones.push(dir);
      } catch {
        // a zone without a readable type is not ours to read
      }
    }
  } catch {
    // no thermal zones on this host (VMs, containers): temperature stays unknown
  }
  return zones;
}

/** Hottest CPU thermal zone in degrees C, or undefined when the host exposes none (like this VM). */
export function readCpuTemperature(): number | undefined {
  let hottest: number | undefined;
  for (const dir of cpuZones()) {
    try {
      const milli = Number(readFileSync(path.join(dir, 'temp'), 'utf8'));
      if (Number.isFinite(milli)) hottest = Math.max(hottest ?? -Infinity, milli / 1000);
    } catch {
      // zone vanished or unreadable
    }
  }
  return hottest;
}
