/**
 * What the ncs2-stats node sends, built from one engine statistics snapshot (pure: tested without
 * Node-RED). Output 1 carries one message per metric, `{topic, payload: number}`: the shape both
 * dashboards' charts and gauges take as is (topic = series, payload = y). Output 2 carries one
 * array of device rows, which ui-table replaces its contents with.
 */
import type { EngineStats } from '../../src/engine';
import type { InferNodeCounts } from './infer-counters';
import type { DeviceLease } from './device-lease';
import type { LoadedGraph } from './graph-lease';

export interface StatsFilter {
  /** Only this graph (engine graph id); undefined = every graph. */
  graphId?: string;
  /** Only this device (engine device id); undefined = every device. */
  deviceId?: string;
  /** Only these devices (a pool's); undefined = every device. */
  deviceIds?: string[];
}

/** A pool's members, so its rows say which member each device is and why one does not serve. */
export interface PoolView {
  /** Device id -> its member: kind and 1-based position in the pool's list. */
  members: Record<string, { kind: string; position: number }>;
  /** Device id -> why it does not run the selected graph (skipped, failed to load). */
  notRunning?: Record<string, string>;
}

export interface MetricMessage {
  topic: string;
  payload: number;
}

export interface DeviceRow {
  device: string;
  /** Pool rows: the member's kind and position in the pool's list. */
  kind?: string;
  member?: number;
  /** Pool rows: serving, removed (a stick pulled), or not running the graph. */
  state?: 'serving' | 'removed' | 'not running';
  reason?: string;
  /** Pool rows: this device's share of the requests the pool's devices completed (null before any). */
  share?: number | null;
  fps: number;
  p50: number;
  p99: number;
  tops: number;
  utilization: number | null;
  temperatureC: number | null;
  queue: number;
  drops: number;
  simulated: boolean;
}

/** Rounded so a dashboard label does not show 17 digits; small enough not to hide a change. */
function r(value: number, digits = 3): number {
  return Number(value.toFixed(digits));
}

/** Pushes a metric unless it is unknown: a null would draw as 0 on a chart, which is a lie. */
function push(out: MetricMessage[], topic: string, value: number | null | undefined, digits = 3): void {
  if (value === null || value === undefined || !Number.isFinite(value)) return;
  out.push({ topic, payload: r(value, digits) });
}

/** The rows a pool gets: every member device, with why one does not run the graph (when a graph is selected). */
export function poolView(pool: DeviceLease, graph?: LoadedGraph): PoolView {
  const members: PoolView['members'] = {};
  for (const d of pool.devices) members[d.spec.id] = { kind: d.member.kind, position: d.position };
  return { members, notRunning: graph?.notRunning };
}

type DeviceSnapshot = EngineStats['devices'][string];

function poolColumns(d: DeviceSnapshot, pool: PoolView, poolSamples: number): Partial<DeviceRow> {
  const member = pool.members[d.deviceId];
  const reason = pool.notRunning?.[d.deviceId];
  const state = d.removed ? 'removed' : reason ? 'not running' : 'serving';
  return { kind: member.kind, member: member.position, state, ...(reason ? { reason } : {}), share: poolSamples > 0 ? r(d.completedTasks / poolSamples, 4) : null };
}

export function buildStatsMessages(stats: EngineStats, filter: StatsFilter = {}, inferNodes: InferNodeCounts[] = [], pool?: PoolView): { metrics: MetricMessage[]; rows: DeviceRow[] } {
  const graphs = Object.values(stats.graphs).filter((g) => !filter.graphId || g.graphId === filter.graphId);
  // A pool's devices all get a row (one pulled or not running the graph included: that is what its row is for).
  const devices = Object.values(stats.devices).filter(
    (d) =>
      (!filter.deviceId || d.deviceId === filter.deviceId) &&
      (!filter.deviceIds || filter.deviceIds.includes(d.deviceId)) &&
      (pool?.members[d.deviceId] !== undefined || (!d.removed && (!filter.graphId || graphs.some((g) => d.deviceId in g.placement)))),
  );
  const poolSamples = pool ? devices.reduce((n, d) => n + (pool.members[d.deviceId] ? d.completedTasks : 0), 0) : 0;
  const metrics: MetricMessage[] = [];
  const rows: DeviceRow[] = [];
  for (const d of devices) {
    const id = d.deviceId;
    // Drops are counted per graph (the queue is the graph's): a device row shows its graphs' drops.
    const drops = graphs.filter((g) => id in g.placement).reduce((s, g) => s + g.dropped + g.rejected, 0);
    push(metrics, `${id} fps`, d.inferencesPerSec, 1);
    push(metrics, `${id} p50 ms`, d.latencyMs.count ? d.latencyMs.p50 : null);
    push(metrics, `${id} p99 ms`, d.latencyMs.count ? d.latencyMs.p99 : null);
    push(metrics, `${id} tops`, d.achievedTops, 6);
    push(metrics, `${id} utilization`, d.utilization, 4);
    push(metrics, `${id} occupancy`, d.occupancy, 4);
    push(metrics, `${id} temperature C`, d.temperatureC, 1);
    push(metrics, `${id} queue`, d.queueDepths.inference, 0);
    push(metrics, `${id} in flight`, d.inFlight, 0);
    push(metrics, `${id} failed`, d.failedTasks, 0);
    if (pool?.members[id] && poolSamples > 0) push(metrics, `${id} share`, d.completedTasks / poolSamples, 4);
    if (d.transfer.link !== 'none') {
      push(metrics, `${id} MB/s to device`, d.transfer.bytesInPerSec / 1e6);
      push(metrics, `${id} MB/s from device`, d.transfer.bytesOutPerSec / 1e6);
      push(metrics, `${id} link utilization`, d.transfer.bandwidthUtilization, 4);
    }
    rows.push({
      device: id,
      fps: r(d.inferencesPerSec, 1),
      p50: r(d.latencyMs.p50),
      p99: r(d.latencyMs.p99),
      tops: r(d.achievedTops, 6),
      utilization: d.utilization === null ? null : r(d.utilization, 4),
      temperatureC: d.temperatureC === null ? null : r(d.temperatureC, 1),
      queue: d.queueDepths.inference,
      drops,
      simulated: d.simulated,
      ...(pool?.members[id] ? poolColumns(d, pool, poolSamples) : {}),
    });
  }
  for (const g of graphs) {
    push(metrics, `${g.name} p50 ms`, g.latencyMs.count ? g.latencyMs.p50 : null);
    push(metrics, `${g.name} p99 ms`, g.latencyMs.count ? g.latencyMs.p99 : null);
    push(metrics, `${g.name} queue`, g.queueDepth, 0);
    push(metrics, `${g.name} completed`, g.completed, 0);
    push(metrics, `${g.name} drops`, g.dropped + g.rejected, 0);
    push(metrics, `${g.name} failed`, g.failed, 0);
  }
  // Each ncs2-infer node's own backpressure acts before the engine, so only the node can count it.
  for (const n of inferNodes) {
    if (filter.deviceId || filter.deviceIds || (filter.graphId && n.graphId !== filter.graphId)) continue;
    push(metrics, `${n.node} dropped`, n.dropped, 0);
    push(metrics, `${n.node} rejected`, n.rejected, 0);
    push(metrics, `${n.node} held`, n.held, 0);
  }
  if (!filter.graphId && !filter.deviceId && !filter.deviceIds) {
    push(metrics, 'total fps', stats.totalInferencesPerSec, 1);
    push(metrics, 'total tops', stats.totalTops, 6);
    push(metrics, 'event loop p99 ms', stats.eventLoopDelayMs.p99);
    push(metrics, 'graph cache hit rate', stats.graphCache.hitRate, 4);
    // Request stages (host-wide): only the ones present (a CPU device has no transfer stages).
    const bottleneck = stats.pipeline.bottleneck?.stage;
    for (const st of Object.values(stats.pipeline.stages)) {
      if (!st.present) continue;
      push(metrics, `stage ${st.stage} queue`, st.queued, 0);
      push(metrics, `stage ${st.stage} busy`, st.busyShare, 4);
      push(metrics, `stage ${st.stage} p50 ms`, st.serviceMs.count ? st.serviceMs.p50 : null);
      push(metrics, `stage ${st.stage} p99 ms`, st.serviceMs.count ? st.serviceMs.p99 : null);
      push(metrics, `stage ${st.stage} bottleneck`, bottleneck === st.stage ? 1 : 0, 0);
    }
  }
  return { metrics, rows };
}
