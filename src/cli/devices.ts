/**
 * `ncs2 devices`: what the engine can run on here. The CPU is described by creating the same
 * CpuDevice the engine would (so the split shown is the engine's real default, not a copy of its
 * rule), with the peak this host measured for that split when the cache has one.
 */
import { promises as fs } from 'fs';
import { CpuDevice, InferenceEngine, ensurePeak, peakCachePath, peakKey, peakKeyFor, readCachedPeak, onnxruntimeVersion } from '../engine';
import type { PeakResult } from '../engine';

export interface DeviceReport {
  id: string;
  kind: 'cpu';
  name: string;
  cpuModel: string;
  cores: number;
  /** The split a CpuDevice uses when no workers/threads are given. */
  defaultSplit: { workers: number; threadsPerWorker: number };
  temperatureC: number | null;
  simulated: false;
  /** Measured peak ops/s for the default split (null until measured on this host). */
  peak: { fp32: number | null; int8: number | null; measuredAt: string; method: string; key: string } | null;
  /** Peaks this host has measured for other splits (from `ncs2 bench` trials or calibrations). */
  otherSplits: Array<{ split: string; fp32: number | null; int8: number | null }>;
}

export interface DevicesReport {
  devices: DeviceReport[];
  peakCache: string;
  onnxruntime: string;
}

export interface DevicesOptions {
  /** Measure the default split's peak now (when not cached) instead of only reading the cache. */
  calibrate?: boolean;
}

function peakOf(r: PeakResult | undefined): DeviceReport['peak'] {
  if (!r) return null;
  return { fp32: r.fp32 ?? null, int8: r.int8 ?? null, measuredAt: r.measuredAt, method: r.method, key: r.key };
}

/** Other cached splits of this host (same CPU, core count and runtime): the key differs only in the split. */
async function otherSplits(ownKey: string): Promise<DeviceReport['otherSplits']> {
  let entries: Record<string, PeakResult>;
  try {
    entries = (JSON.parse(await fs.readFile(peakCachePath(), 'utf8')) as { entries?: Record<string, PeakResult> }).entries ?? {};
  } catch {
    return [];
  }
  // A key for split 0x0 marks where the split sits; every other part must match this host.
  const template = peakKeyFor({ kind: 'cpu', workers: 0, threadsPerWorker: 0 });
  const [prefix, suffix] = template.split('cpu 0x0');
  const out: DeviceReport['otherSplits'] = [];
  for (const [key, r] of Object.entries(entries)) {
    if (key === ownKey || !key.startsWith(prefix) || !key.endsWith(suffix)) continue;
    const split = key.slice(prefix.length, key.length - suffix.length).replace(/^cpu /, '');
    out.push({ split, fp32: r.fp32 ?? null, int8: r.int8 ?? null });
  }
  return out.sort((a, b) => a.split.localeCompare(b.split));
}

export async function listDevices(options: DevicesOptions = {}): Promise<DevicesReport> {
  const device = new CpuDevice({ id: 'cpu' });
  let engine: InferenceEngine | undefined;
  try {
    const key = peakKey(device);
    let peak = await readCachedPeak(key);
    if (options.calibrate) {
      engine = new InferenceEngine({ devices: [device] });
      peak = await ensurePeak(engine, device.id);
    }
    const info = device.info;
    return {
      devices: [
        {
          id: device.id,
          kind: 'cpu',
          name: info.name,
          cpuModel: info.description,
          cores: Number(info.cores),
          defaultSplit: { workers: Number(info.workers), threadsPerWorker: Number(info.threadsPerWorker) },
          temperatureC: device.telemetry().temperatureC ?? null,
          simulated: false,
          peak: peakOf(peak),
          otherSplits: await otherSplits(key),
        },
      ],
      peakCache: peakCachePath(),
      onnxruntime: onnxruntimeVersion(),
    };
  } finally {
    if (engine) await engine.close();
    else await device.close();
  }
}
