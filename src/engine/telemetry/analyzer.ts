/**
 * PerformanceAnalyzer: the seed API's "why is it slow / will another stick help" answers, from
 * measured figures only. Every ceiling is a device's measured peak or, for a stick, its published
 * 1 TOPS; every recommendation is produced by a rule over measured evidence and carries that
 * evidence, so a user can check it (and a test can switch it on and off).
 */
import { promises as fs } from 'fs';
import { countModelOps, type OpCount } from '../graph/op-count';
import type { EngineStats, InferenceEngine } from '../pipeline/engine';
import type { ModelInfo } from '../graph/model-info';
import { bytesPerElement } from '../tensor';

/** Published DNN peak of one NCS2 (Myriad X, two Neural Compute Engines): the only constant peak used. */
export const NCS2_PUBLISHED_PEAK_TOPS = 1;
/** USB 3 payload rate of one stick's link: the middle of the published 400-500 MB/s (ncs2-facts.md). */
export const USB3_BYTES_PER_SEC = 450e6;
/** USB 2 payload rate of a whole bus (shared by its sticks): the published ceiling, under 60 MB/s. */
export const USB2_BYTES_PER_SEC = 60e6;

/**
 * Rule thresholds. They are named so a recommendation can quote the line it crossed; values are
 * chosen so that normal jitter on a busy host does not trigger them.
 */
export const THRESHOLDS = Object.freeze({
  /** A device busy less than this share of the time is idle enough to take more work. */
  idleOccupancy: 0.5,
  /** Busy at least this share of the time: the device is the bottleneck. */
  saturatedOccupancy: 0.9,
  /** Utilization (achieved / peak) under this at batch 1 leaves the engines mostly unused. */
  lowUtilization: 0.3,
  /** Correlation of latency with temperature at or above this counts as "rises with". */
  thermalCorrelation: 0.7,
  /** ... and latency must have risen at least this share between the coolest and hottest samples. */
  thermalLatencyRise: 0.2,
  /** ... over at least this many degrees, from at least thermalMinSamples samples. */
  thermalMinRangeC: 3,
  thermalMinSamples: 5,
  /** Event-loop delay p99 above this (ms): the main thread cannot keep up (timers 50 ms late). */
  eventLoopDelayP99Ms: 50,
  /** A link moving this share of its bandwidth limits throughput. */
  linkBound: 0.8,
});

export type LinkKind = 'usb3' | 'usb2';

/** What is known about one device. */
export interface DeviceEvidence {
  deviceId: string;
  /** 'cpu', 'sim-ncs2', 'ncs2'. */
  kind: string;
  /** Measured peak (TOPS); for a stick the published 1 TOPS is used when absent. */
  peakTops?: number | null;
  /** USB generation of a stick's port. */
  usb?: 2 | 3;
  /** Inferences per second this device did (default: an equal share of throughputFps). */
  fps?: number;
  /** Share of the window its executors were busy (0..1). */
  occupancy?: number;
  utilization?: number | null;
  inFlight?: number;
  maxInFlight?: number;
}

export interface AnalyzeInput {
  throughputFps: number;
  latencyMs: number;
  deviceCount: number;
  opsPerInference: number;
  /** What the user aims for (TOPS); default the theoretical ceiling. */
  targetTops?: number | null;
  devices?: DeviceEvidence[];
  /** Bytes crossing the link per inference (inputs + outputs as they travel). */
  bytesPerInference?: number;
  /** Samples per run. */
  batchSize?: number;
  /** Whether the graph's batch dimension is free (batching possible). */
  batchable?: boolean;
  batchingEnabled?: boolean;
  /** Tasks waiting in the engine's queue (0 = the devices got everything that was submitted). */
  queueDepth?: number;
  /** Tasks the producer keeps outstanding. */
  requestsInFlight?: number;
  /** Main-thread event-loop delay p99 (ms). */
  eventLoopDelayP99Ms?: number;
  /** Samples of (temperature, latency) over time, for throttling detection. */
  thermalSamples?: Array<{ temperatureC: number; latencyMs: number }>;
  /** Tasks the queue policy dropped or rejected. */
  dropped?: number;
}

export type RecommendationId = 'raise-in-flight' | 'enable-batching' | 'thermal-throttling' | 'host-cpu-saturated' | 'link-bound' | 'add-device' | 'queue-overflow';

export interface Recommendation {
  id: RecommendationId;
  message: string;
  /** The measured figures the rule fired on. */
  evidence: Record<string, number | string | boolean>;
}

export interface PerformanceAnalysis {
  throughputFps: number;
  latencyMs: number;
  totalTops: number;
  topsPerDevice: number;
  /** Sum of the devices' ceilings (null when any device's ceiling is unknown). */
  theoreticalTops: number | null;
  targetTops: number | null;
  efficiencyVsTheoretical: number | null;
  progressToTarget: number | null;
  /** Highest link load (bytes/s over the link's bandwidth); null without sticks or byte counts. */
  bandwidthUtilization: number | null;
  recommendations: Recommendation[];
}

const round = (v: number, digits = 3): number => Number(v.toFixed(digits));

/** Pearson correlation; 0 when either series is constant. */
export function correlation(xs: number[], ys: number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return 0;
  const mx = xs.slice(0, n).reduce((a, b) => a + b, 0) / n;
  const my = ys.slice(0, n).reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

function isStick(kind: string): boolean {
  return kind === 'ncs2' || kind === 'sim-ncs2';
}

export class PerformanceAnalyzer {
  /** TOPS from a rate of inferences and the ops each one takes (2 ops per multiply-accumulate). */
  static calculateTops(throughputOpsPerSec: number, opsPerInference: number): number {
    if (!Number.isFinite(throughputOpsPerSec) || !Number.isFinite(opsPerInference) || throughputOpsPerSec < 0 || opsPerInference < 0) {
      throw new RangeError(`calculateTops needs non-negative finite numbers, got ${throughputOpsPerSec} inferences/s and ${opsPerInference} ops`);
    }
    return (throughputOpsPerSec * opsPerInference) / 1e12;
  }

  /** Ops per inference counted from the graph (a path or the model's bytes); batch dims at 1 unless given. */
  static async estimateModelOps(model: string | Uint8Array, inputShapes?: Record<string, number[]>): Promise<OpCount> {
    const bytes = typeof model === 'string' ? await fs.readFile(model) : model;
    return countModelOps(bytes, inputShapes);
  }

  /** The ceiling of one device in TOPS: measured, else the published figure for a stick, else unknown. */
  static deviceCeilingTops(d: Pick<DeviceEvidence, 'kind' | 'peakTops'>): number | null {
    if (typeof d.peakTops === 'number' && d.peakTops > 0) return d.peakTops;
    return isStick(d.kind) ? NCS2_PUBLISHED_PEAK_TOPS : null;
  }

  /**
   * The busiest link's load: each USB 3 stick has its own link; USB 2 sticks share one bus, so
   * their traffic adds up. Null for CPU-only evidence or when bytes per inference are unknown.
   */
  static bandwidthUtilization(input: Pick<AnalyzeInput, 'devices' | 'bytesPerInference' | 'throughputFps' | 'deviceCount'>): number | null {
    const devices = input.devices ?? [];
    const bytes = input.bytesPerInference;
    if (bytes === undefined || bytes <= 0) return null;
    const share = input.throughputFps / Math.max(1, input.deviceCount || devices.length);
    let worst: number | null = null;
    let usb2Bytes = 0;
    let anyUsb2 = false;
    for (const d of devices) {
      if (!isStick(d.kind)) continue;
      const rate = (d.fps ?? share) * bytes;
      if (d.usb === 2) {
        usb2Bytes += rate;
        anyUsb2 = true;
      } else {
        worst = Math.max(worst ?? 0, rate / USB3_BYTES_PER_SEC);
      }
    }
    if (anyUsb2) worst = Math.max(worst ?? 0, usb2Bytes / USB2_BYTES_PER_SEC);
    return worst;
  }

  static analyzePerformance(input: AnalyzeInput): PerformanceAnalysis {
    const totalTops = PerformanceAnalyzer.calculateTops(input.throughputFps, input.opsPerInference);
    const devices = input.devices ?? [];
    let theoreticalTops: number | null = null;
    if (devices.length > 0) {
      const ceilings = devices.map((d) => PerformanceAnalyzer.deviceCeilingTops(d));
      theoreticalTops = ceilings.every((c): c is number => c !== null) ? ceilings.reduce((a, b) => a + b, 0) : null;
    }
    const targetTops = input.targetTops ?? theoreticalTops;
    const bandwidthUtilization = PerformanceAnalyzer.bandwidthUtilization(input);
    return {
      throughputFps: input.throughputFps,
      latencyMs: input.latencyMs,
      totalTops,
      topsPerDevice: input.deviceCount > 0 ? totalTops / input.deviceCount : 0,
      theoreticalTops,
      targetTops,
      efficiencyVsTheoretical: theoreticalTops ? totalTops / theoreticalTops : null,
      progressToTarget: targetTops ? totalTops / targetTops : null,
      bandwidthUtilization,
      recommendations: PerformanceAnalyzer.recommend(input, bandwidthUtilization),
    };
  }

  /** One rule per recommendation; a rule fires only when all of its evidence is present. */
  static recommend(input: AnalyzeInput, bandwidthUtilization = PerformanceAnalyzer.bandwidthUtilization(input)): Recommendation[] {
    const t = THRESHOLDS;
    const out: Recommendation[] = [];
    const devices = input.devices ?? [];
    const withOccupancy = devices.filter((d) => typeof d.occupancy === 'number');
    const meanOccupancy = withOccupancy.length ? withOccupancy.reduce((s, d) => s + d.occupancy!, 0) / withOccupancy.length : undefined;
    const linkBound = bandwidthUtilization !== null && bandwidthUtilization >= t.linkBound;

    if (meanOccupancy !== undefined && meanOccupancy < t.idleOccupancy && input.queueDepth === 0) {
      const evidence: Recommendation['evidence'] = { meanOccupancy: round(meanOccupancy), queueDepth: 0 };
      if (input.requestsInFlight !== undefined) evidence.requestsInFlight = input.requestsInFlight;
      out.push({
        id: 'raise-in-flight',
        message: `devices were busy ${(meanOccupancy * 100).toFixed(0)}% of the time while the queue stayed empty: the producer does not keep them fed; raise requests in flight${input.requestsInFlight !== undefined ? ` (now ${input.requestsInFlight})` : ''}`,
        evidence,
      });
    }

    const utilizations = devices.map((d) => d.utilization).filter((u): u is number => typeof u === 'number');
    if (input.batchSize === 1 && input.batchable === true && input.batchingEnabled !== true && utilizations.length > 0) {
      const u = utilizations.reduce((a, b) => a + b, 0) / utilizations.length;
      if (u < t.lowUtilization) {
        out.push({
          id: 'enable-batching',
          message: `utilization is ${(u * 100).toFixed(1)}% of the device peak at batch 1 and the model's batch dimension is free: enable batching so each run carries more samples`,
          evidence: { utilization: round(u, 4), batchSize: 1, batchable: true },
        });
      }
    }

    const samples = input.thermalSamples ?? [];
    if (samples.length >= t.thermalMinSamples) {
      const temps = samples.map((s) => s.temperatureC);
      const lats = samples.map((s) => s.latencyMs);
      const r = correlation(temps, lats);
      const coolest = samples.reduce((a, b) => (b.temperatureC < a.temperatureC ? b : a));
      const hottest = samples.reduce((a, b) => (b.temperatureC > a.temperatureC ? b : a));
      const rangeC = hottest.temperatureC - coolest.temperatureC;
      const rise = coolest.latencyMs > 0 ? hottest.latencyMs / coolest.latencyMs - 1 : 0;
      if (r >= t.thermalCorrelation && rangeC >= t.thermalMinRangeC && rise >= t.thermalLatencyRise) {
        out.push({
          id: 'thermal-throttling',
          message: `latency rose ${(rise * 100).toFixed(0)}% as temperature went from ${coolest.temperatureC.toFixed(1)} to ${hottest.temperatureC.toFixed(1)} C (correlation ${r.toFixed(2)}): the device throttles; improve cooling or rotate work to cooler devices`,
          evidence: { correlation: round(r), latencyRise: round(rise), fromC: coolest.temperatureC, toC: hottest.temperatureC, samples: samples.length },
        });
      }
    }

    if (input.eventLoopDelayP99Ms !== undefined && input.eventLoopDelayP99Ms > t.eventLoopDelayP99Ms) {
      out.push({
        id: 'host-cpu-saturated',
        message: `the main thread's event-loop delay p99 is ${input.eventLoopDelayP99Ms.toFixed(1)} ms: the host CPU (pre/postprocessing, flows) limits throughput, not the devices; move work off the main thread or lower requests in flight`,
        evidence: { eventLoopDelayP99Ms: round(input.eventLoopDelayP99Ms, 1) },
      });
    }

    if (linkBound) {
      out.push({
        id: 'link-bound',
        message: `the USB link moves ${(bandwidthUtilization! * 100).toFixed(0)}% of its bandwidth: transfers limit throughput; send U8 inputs, or use a USB 3 port per stick`,
        evidence: { bandwidthUtilization: round(bandwidthUtilization!), bytesPerInference: input.bytesPerInference! },
      });
    }

    // Another device helps only when the present ones are the bottleneck and work is waiting, and
    // not when a shared link is what limits them.
    if (meanOccupancy !== undefined && meanOccupancy >= t.saturatedOccupancy && (input.queueDepth ?? 0) > 0 && !linkBound) {
      out.push({
        id: 'add-device',
        message: `devices were busy ${(meanOccupancy * 100).toFixed(0)}% of the time with ${input.queueDepth} tasks waiting: they are the bottleneck; another device would add throughput`,
        evidence: { meanOccupancy: round(meanOccupancy), queueDepth: input.queueDepth! },
      });
    }

    if (input.dropped !== undefined && input.dropped > 0) {
      out.push({
        id: 'queue-overflow',
        message: `${input.dropped} tasks were dropped or rejected by the queue policy: raise the queue capacity for bursts, or add device capacity for sustained load`,
        evidence: { dropped: input.dropped },
      });
    }
    return out;
  }

  /**
   * The evidence an engine's statistics hold, for one graph (default: all graphs together).
   * Temperature series and bytes per inference are not in one snapshot: pass them in `extra`.
   */
  static evidenceFromStats(stats: EngineStats, graphId?: string, extra: Partial<AnalyzeInput> = {}): AnalyzeInput {
    const graphs = Object.values(stats.graphs).filter((g) => !graphId || g.graphId === graphId);
    const devices = Object.values(stats.devices).filter((d) => !d.removed);
    const opsPerInference = graphs.length ? Math.max(...graphs.map((g) => g.opsPerInference)) : 0;
    const latencies = graphs.map((g) => g.latencyMs).filter((l) => l.count > 0);
    const latencyMs = latencies.length ? latencies.reduce((s, l) => s + l.p50 * l.count, 0) / latencies.reduce((s, l) => s + l.count, 0) : 0;
    // Bytes a sample moved across a stick's link, as measured (uint8 inputs: 1 byte per value, floats as FP16).
    const measured = devices.filter((d) => isStick(d.kind) && d.transfer.samples > 0);
    const bytesPerInference = measured.length ? Math.max(...measured.map((d) => d.transfer.bytesInPerSample + d.transfer.bytesOutPerSample)) : undefined;
    return {
      throughputFps: stats.totalInferencesPerSec,
      latencyMs,
      deviceCount: devices.length,
      opsPerInference,
      targetTops: stats.targetTops,
      devices: devices.map((d) => ({
        deviceId: d.deviceId,
        kind: d.kind,
        peakTops: d.peakTops,
        fps: d.inferencesPerSec,
        occupancy: d.occupancy,
        utilization: d.utilization,
        inFlight: d.inFlight,
        maxInFlight: d.maxInFlight,
      })),
      queueDepth: graphs.reduce((s, g) => s + g.queueDepth, 0),
      eventLoopDelayP99Ms: stats.eventLoopDelayMs.p99,
      dropped: graphs.reduce((s, g) => s + g.dropped + g.rejected, 0),
      batchingEnabled: graphs.some((g) => g.batching.enabled),
      ...(bytesPerInference !== undefined ? { bytesPerInference } : {}),
      ...extra,
    };
  }

  /**
   * Evidence from a live engine: its statistics plus what they do not carry, each stick's USB
   * generation (device info) and, before any transfer was measured, the bytes a graph moves per
   * inference (from its declared shapes).
   */
  static fromEngine(engine: InferenceEngine, graphId?: string, extra: Partial<AnalyzeInput> = {}): AnalyzeInput {
    const stats = engine.getStats();
    const input = PerformanceAnalyzer.evidenceFromStats(stats, graphId, extra);
    input.devices = input.devices?.map((d) => {
      const usb = engine.getDevice(d.deviceId)?.info.usb;
      return usb === 2 || usb === 3 ? { ...d, usb } : d;
    });
    if (input.bytesPerInference === undefined && graphId) {
      const info = engine.getGraph(graphId)?.info;
      const stick = input.devices?.some((d) => isStick(d.kind)) ?? false;
      const bytes = info ? transferBytes(info, stick) : undefined;
      if (bytes !== undefined) input.bytesPerInference = bytes;
    }
    return input;
  }
}

/**
 * Bytes one sample moves across the link: every input in and every output back. On a stick, float
 * tensors travel as FP16 (2 bytes; ncs2-facts.md), other types as they are. Symbolic dims (the
 * batch) count 1; undefined when a non-batch dim is unknown.
 */
export function transferBytes(info: ModelInfo, stick: boolean): number | undefined {
  let total = 0;
  for (const t of [...info.inputs, ...info.outputs]) {
    if (t.type === 'string') return undefined;
    let n = 1;
    for (const [i, d] of t.dims.entries()) {
      if (typeof d === 'number' && d > 0) n *= d;
      else if (i !== 0) return undefined;
    }
    const width = stick && (t.type === 'float32' || t.type === 'float16') ? 2 : bytesPerElement(t.type);
    total += n * width;
  }
  return total;
}
