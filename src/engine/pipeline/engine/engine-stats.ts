import type { Device } from '../../devices/device';
import type { MemoryPool, MemoryPoolStats } from '../../memory/memory-pool';
import { LatencyHistogram, type EventLoopMonitor } from '../../telemetry/stats';
import { STAGES, findBottleneck, type StageName, type StageStats } from '../stages';
import type { DeviceRegistry } from './device-registry';
import type { GraphEntry, GraphStore } from './graph-store';
import type { StageControl } from './stage-control';
import type { EngineStats, GraphStats, PipelineStats } from './types';

/** A graph's outcome counts, its latency and its batched runs. */
export class GraphCounters {
  readonly counts = { submitted: 0, completed: 0, failed: 0, dropped: 0, rejected: 0, expired: 0, retried: 0 };
  readonly latency = new LatencyHistogram();
  batches = 0;
  batchedSamples = 0;

  onRun(samples: number): void {
    this.batches++;
    this.batchedSamples += samples;
  }

  reset(): void {
    this.latency.reset();
    for (const k of Object.keys(this.counts) as Array<keyof GraphCounters['counts']>) this.counts[k] = 0;
  }
}

export function graphStats(g: GraphEntry, store: GraphStore): GraphStats {
  const batching = g.batching.active;
  return {
    graphId: g.id,
    name: g.name,
    ...store.status(g),
    precision: g.info.precision,
    opsPerInference: g.ops.total,
    opsCountComplete: g.ops.unknownOps.length === 0,
    queueDepth: g.queue.length,
    queueCapacity: g.queue.capacity,
    queuePolicy: g.queue.policy,
    waitingForRoom: g.queue.waitingForRoom,
    waitingBytes: g.queue.waitingBytes,
    ...g.counters.counts,
    latencyMs: g.counters.latency.summary(),
    placement: Object.fromEntries([...g.load.loaded].map(([d, dg]) => [d, { executionProvider: dg.executionProvider, ...(dg.fallbackReason ? { fallbackReason: dg.fallbackReason } : {}) }])),
    loadErrors: Object.fromEntries(g.load.errors),
    batching: {
      enabled: !!batching,
      ...(g.batching.unbatchedReason ? { reason: g.batching.unbatchedReason } : {}),
      ...(batching ? { cap: batching.controller.cap, delayMs: batching.controller.delayMs, maxBatchSize: batching.options.maxBatchSize, targetLatencyMs: batching.options.targetLatencyMs } : {}),
      runs: g.counters.batches,
      avgBatchSize: g.counters.batches ? g.counters.batchedSamples / g.counters.batches : 0,
    },
  };
}

/** What getStats() reads: each part owns its own numbers. */
export interface StatsSources {
  devices: DeviceRegistry;
  graphs: GraphStore;
  control: StageControl;
  pool: MemoryPool;
  eventLoop: EventLoopMonitor;
  targetTops?: number;
}

export function engineStats(s: StatsSources): EngineStats {
  const devices: EngineStats['devices'] = {};
  const topsPerDevice: Record<string, number> = {};
  let tasksPerSec = 0;
  let inferencesPerSec = 0;
  let totalTops = 0;
  let peakTops = 0;
  let anyPeak = false;
  let simulated = false;
  const hostDepths = { preprocessing: s.control.stages.preprocess.queued, postprocessing: s.control.stages.postprocess.queued };
  for (const { id, stats, device, thermal } of s.devices.statsEntries()) {
    const snap = { ...stats.snapshot(device ? s.devices.busyOf(device) : 0, s.graphs.queuedFor(id), hostDepths), thermal };
    devices[id] = snap;
    if (snap.removed) continue;
    topsPerDevice[id] = snap.achievedTops;
    tasksPerSec += snap.throughputOpsPerSec;
    inferencesPerSec += snap.inferencesPerSec;
    totalTops += snap.achievedTops;
    simulated ||= snap.simulated;
    if (snap.peakTops !== null) {
      peakTops += snap.peakTops;
      anyPeak = true;
    }
  }
  const targetTops = s.targetTops ?? (anyPeak ? peakTops : null);
  const graphs: Record<string, GraphStats> = {};
  for (const g of s.graphs.values()) graphs[g.id] = graphStats(g, s.graphs);
  const c = s.graphs.cache.stats();
  return {
    deviceCount: Object.values(devices).filter((d) => !d.removed).length,
    totalThroughputOpsPerSec: tasksPerSec,
    totalInferencesPerSec: inferencesPerSec,
    totalTops,
    topsPerDevice,
    targetTops,
    performanceRatio: targetTops ? totalTops / targetTops : null,
    simulated,
    devices,
    graphs,
    eventLoopDelayMs: s.eventLoop.summary(),
    memory: memoryStats(s.pool, s.devices.list()),
    graphCache: { ...c, hitRate: c.hits + c.misses ? c.hits / (c.hits + c.misses) : 0 },
    pipeline: pipelineStats(s),
  };
}

/**
 * Stage statistics: preprocess and postprocess as they ran here; infer over every device
 * (slots = executors, queued = tasks in graph queues, active = runs on devices); transfers over
 * the devices that have a link (slots = links, queued/active from their bookings).
 */
export function pipelineStats(s: Pick<StatsSources, 'devices' | 'graphs' | 'control'>): PipelineStats {
  let executors = 0;
  let running = 0;
  let links = 0;
  let up = { queued: 0, active: 0 };
  let down = { queued: 0, active: 0 };
  for (const d of s.devices.list()) {
    executors += d.parallelism;
    running += s.devices.busyOf(d);
    const l = d.linkState?.();
    if (!l) continue;
    links += l.links;
    up = { queued: up.queued + l.toDeviceQueued, active: up.active + l.toDeviceActive };
    down = { queued: down.queued + l.fromDeviceQueued, active: down.active + l.fromDeviceActive };
  }
  let waiting = 0;
  for (const g of s.graphs.values()) waiting += g.queue.length;
  const stages = {} as Record<StageName, StageStats>;
  for (const name of STAGES) {
    const stage = s.control.stages[name];
    if (name === 'infer') stages[name] = stage.snapshot({ concurrency: Math.max(1, executors), active: running, queued: waiting, capacity: null, present: executors > 0 });
    else if (name === 'toDevice' || name === 'fromDevice') {
      const now = name === 'toDevice' ? up : down;
      stages[name] = stage.snapshot({ concurrency: Math.max(1, links), active: now.active, queued: now.queued, capacity: null, present: links > 0 });
    } else stages[name] = stage.snapshot();
  }
  return { stages, bottleneck: findBottleneck(stages), concurrency: { ...s.control.concurrency } };
}

/** Pooled host memory ('host', the tensors callers fill) and one entry per device that has a pool. */
export function memoryStats(pool: MemoryPool, devices: Device[]): Record<string, MemoryPoolStats> {
  const out: Record<string, MemoryPoolStats> = { host: pool.getStats() };
  for (const d of devices) {
    const m = d.memoryStats?.();
    if (m) out[d.id] = m;
  }
  return out;
}
