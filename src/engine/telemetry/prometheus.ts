/**
 * Prometheus exposition of the engine's statistics (prom-client, own Registry: nothing leaks into
 * a host application's default registry). Engine-level: no Node-RED here; the ncs2-stats node only
 * mounts metrics() on an admin path.
 *
 * Counters mirror the engine's monotonically increasing totals through collect() callbacks (the
 * engine already counts; counting again here could disagree with getStats()). A counter going
 * down after engine.resetStats() is read by Prometheus as a counter reset, which is what it is.
 * Latency histograms are fed from the engine's 'task' event, attached on the first scrape: the
 * engine computes task events only while someone listens, so nobody pays for them until
 * Prometheus asks.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats, InferenceEngine, TaskEvent } from '../pipeline/engine';

/** Seconds; from sub-millisecond MLP runs to multi-second detection models on a throttled stick. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type GraphCounterField = 'submitted' | 'completed' | 'failed' | 'dropped' | 'rejected' | 'expired' | 'retried';

export class PrometheusExporter {
  readonly registry = new Registry();
  private attached?: InferenceEngine;
  private snapshot?: EngineStats;
  private readonly taskLatency: Histogram<'graph' | 'device'>;
  private readonly inferLatency: Histogram<'graph' | 'device'>;
  /** Label sets the histograms hold, so those of graphs and devices that are gone can be removed. */
  private readonly histogramLabels = new Map<string, { graph: string; device: string }>();
  private readonly onTask = (e: TaskEvent): void => {
    const key = `${e.graphName}\0${e.deviceId}`;
    let labels = this.histogramLabels.get(key);
    if (!labels) this.histogramLabels.set(key, (labels = { graph: e.graphName, device: e.deviceId }));
    this.taskLatency.observe(labels, e.timings.totalMs / 1000);
    this.inferLatency.observe(labels, e.timings.inferMs / 1000);
  };

  constructor(private readonly getEngine: () => InferenceEngine) {
    const registers = [this.registry];
    const stats = () => this.stats();
    type Device = EngineStats['devices'][string];
    type StageRow = EngineStats['pipeline']['stages'][keyof EngineStats['pipeline']['stages']];
    type Row<L extends string> = [Partial<Record<L, string>>, number | null];

    /**
     * A metric whose series are read from the scrape's stats snapshot. A counter follows the
     * engine's total (reset, then inc to the total: prom-client counters have no set()). A null
     * value (not measured, no sensor) is left out rather than exported as 0.
     */
    const metric = <L extends string>(kind: 'gauge' | 'counter', name: string, help: string, labelNames: readonly L[], rows: () => Array<Row<L>>): void => {
      const collect = function (this: Gauge<L> | Counter<L>): void {
        this.reset();
        for (const [labels, v] of rows()) {
          if (v === null || !Number.isFinite(v)) continue;
          if (this instanceof Gauge) this.set(labels, v);
          else this.inc(labels, v);
        }
      };
      const config = { name, help, labelNames, registers, collect };
      if (kind === 'gauge') new Gauge(config);
      else new Counter(config);
    };
    const graphs = () => Object.values(stats().graphs);
    const devices = () => Object.values(stats().devices);
    const liveDevices = () => devices().filter((d) => !d.removed);

    const graphCounter = (name: string, help: string, field: GraphCounterField) => metric('counter', name, help, ['graph'], () => graphs().map((g) => [{ graph: g.name }, g[field]]));
    graphCounter('ncs2_tasks_submitted_total', 'Tasks submitted to a graph', 'submitted');
    graphCounter('ncs2_inferences_total', 'Tasks a graph completed', 'completed');
    graphCounter('ncs2_failures_total', 'Tasks that failed (after retries)', 'failed');
    graphCounter('ncs2_drops_total', 'Tasks the queue policy dropped (drop-oldest / drop-newest)', 'dropped');
    graphCounter('ncs2_rejections_total', 'Tasks refused because the queue was full (reject policy)', 'rejected');
    graphCounter('ncs2_expired_total', 'Tasks that missed their deadline', 'expired');
    graphCounter('ncs2_retries_total', 'Task runs retried on another device after a device error', 'retried');
    // Counters keep the removed devices getStats still lists, so their totals do not drop at a removal.
    metric('counter', 'ncs2_device_inferences_total', 'Tasks a device completed', ['device'], () => devices().map((d) => [{ device: d.deviceId }, d.completedTasks]));
    metric('counter', 'ncs2_device_failures_total', 'Runs that failed on a device', ['device'], () => devices().map((d) => [{ device: d.deviceId }, d.failedTasks]));

    this.taskLatency = new Histogram({ name: 'ncs2_task_latency_seconds', help: 'Submission to result per task', labelNames: ['graph', 'device'] as const, buckets: LATENCY_BUCKETS, registers });
    this.inferLatency = new Histogram({ name: 'ncs2_infer_seconds', help: "The runtime's own time per run carrying the task", labelNames: ['graph', 'device'] as const, buckets: LATENCY_BUCKETS, registers });

    const deviceGauge = (name: string, help: string, value: (d: Device) => number | null) => metric('gauge', name, help, ['device'], () => liveDevices().map((d) => [{ device: d.deviceId }, value(d)]));
    deviceGauge('ncs2_device_in_flight', 'Runs on the device now', (d) => d.inFlight);
    deviceGauge('ncs2_device_max_in_flight', 'Runs the device accepts at once', (d) => d.maxInFlight);
    deviceGauge('ncs2_device_queue_depth', 'Tasks waiting that this device could take', (d) => d.queueDepths.inference);
    deviceGauge('ncs2_device_temperature_celsius', 'Device temperature (absent without a sensor)', (d) => d.temperatureC);
    deviceGauge('ncs2_device_utilization_ratio', 'Achieved ops/s over the measured (or a stick\'s published) peak (absent until a peak is measured)', (d) => d.utilization);
    deviceGauge('ncs2_device_occupancy_ratio', "Share of the window the device's executors were busy", (d) => d.occupancy);
    deviceGauge('ncs2_device_inferences_per_second', 'Samples per second over the sliding window', (d) => d.inferencesPerSec);
    deviceGauge('ncs2_device_achieved_tops', 'Arithmetic ops per second counted from the graphs, in 10^12', (d) => d.achievedTops);
    deviceGauge('ncs2_device_simulated', '1 when the device is simulated', (d) => (d.simulated ? 1 : 0));

    // Request stages (preprocess, toDevice, infer, fromDevice, postprocess). A stage no device has
    // (transfers on a CPU) is left out: it costs nothing and has nothing to show.
    const presentStages = () => Object.values(stats().pipeline.stages).filter((st) => st.present);
    const perStage = (kind: 'gauge' | 'counter', name: string, help: string, value: (st: StageRow) => number) => metric(kind, name, help, ['stage'], () => presentStages().map((st) => [{ stage: st.stage }, value(st)]));
    perStage('gauge', 'ncs2_stage_queue_depth', 'Requests waiting for a slot of the stage', (st) => st.queued);
    perStage('gauge', 'ncs2_stage_in_progress', 'Requests in the stage now', (st) => st.active);
    perStage('gauge', 'ncs2_stage_concurrency', 'Slots of the stage (requests it works on at once)', (st) => st.concurrency);
    perStage('gauge', 'ncs2_stage_busy_ratio', "Share of the stage's slots busy over the sliding window", (st) => st.busyShare);
    perStage('gauge', 'ncs2_stage_bottleneck', '1 for the stage that limits throughput now (busiest), 0 for the others', (st) => (stats().pipeline.bottleneck?.stage === st.stage ? 1 : 0));
    // Quantiles as gauges of their own names: a `quantile` label belongs to summaries only
    // (promtool check metrics), and a summary's _sum/_count would repeat what the counters say.
    const withSamples = () => presentStages().filter((st) => st.serviceMs.count > 0);
    metric('gauge', 'ncs2_stage_latency_p50_seconds', 'Median time in the stage per request once it had a slot (HDR histogram)', ['stage'], () => withSamples().map((st) => [{ stage: st.stage }, st.serviceMs.p50 / 1000]));
    metric('gauge', 'ncs2_stage_latency_p99_seconds', '99th percentile of the time in the stage per request once it had a slot (HDR histogram)', ['stage'], () => withSamples().map((st) => [{ stage: st.stage }, st.serviceMs.p99 / 1000]));
    perStage('counter', 'ncs2_stage_completed_total', 'Requests the stage finished', (st) => st.completed);
    perStage('counter', 'ncs2_stage_failed_total', 'Requests that failed in the stage (a corrupt image in preprocess)', (st) => st.failed);
    perStage('counter', 'ncs2_stage_rejected_total', "Requests refused because the stage's waiting queue was full", (st) => st.rejected);

    /** One series per device and direction (to_device, from_device). */
    const perDirection = (kind: 'gauge' | 'counter', name: string, help: string, value: (d: Device) => [number, number] | null) =>
      metric(kind, name, help, ['device', 'direction'], () =>
        devices().flatMap((d): Array<Row<'device' | 'direction'>> => {
          const v = value(d);
          return v
            ? [
                [{ device: d.deviceId, direction: 'to_device' }, v[0]],
                [{ device: d.deviceId, direction: 'from_device' }, v[1]],
              ]
            : [];
        }),
      );
    perDirection('counter', 'ncs2_device_transfer_bytes_total', "Bytes moved to and from a device (a stick's USB link; for a CPU device the tensors handed to its workers)", (d) => [d.transfer.bytesIn, d.transfer.bytesOut]);
    perDirection('gauge', 'ncs2_device_link_queue_depth', "Requests waiting for a stick's USB link, per direction", (d) => (d.removed || d.transfer.link === 'none' ? null : [d.queueDepths.toDevice, d.queueDepths.fromDevice]));
    deviceGauge('ncs2_device_link_utilization_ratio', "Busier direction's bytes/s over the stick's link payload rate (absent without a link)", (d) => d.transfer.bandwidthUtilization);

    metric('gauge', 'ncs2_graph_queue_depth', "Tasks waiting in a graph's queue", ['graph'], () => graphs().map((g) => [{ graph: g.name }, g.queueDepth]));
    metric('gauge', 'ncs2_graph_queue_capacity', "Bound of a graph's queue", ['graph'], () => graphs().map((g) => [{ graph: g.name }, g.queueCapacity]));
    metric('gauge', 'ncs2_pool_hit_rate_ratio', 'Buffer requests served from a memory pool', ['pool'], () => Object.entries(stats().memory).map(([pool, m]) => [{ pool }, m.bufferHitRate]));
    metric('gauge', 'ncs2_graph_cache_hit_rate_ratio', 'Graph loads served from the compiled-graph cache', [], () => [[{}, stats().graphCache.hitRate]]);
    metric('gauge', 'ncs2_event_loop_delay_p50_seconds', "Median of the main thread's event-loop delay (beyond the timer's due time)", [], () => [[{}, stats().eventLoopDelayMs.p50 / 1000]]);
    metric('gauge', 'ncs2_event_loop_delay_p99_seconds', "99th percentile of the main thread's event-loop delay (beyond the timer's due time)", [], () => [[{}, stats().eventLoopDelayMs.p99 / 1000]]);
  }

  /** One getStats() per scrape: every collect() of the scrape reads the same snapshot. */
  private stats(): EngineStats {
    if (!this.snapshot) {
      this.snapshot = this.getEngine().getStats();
      // Collects run in the microtasks of one metrics() call; the next macrotask takes a fresh snapshot.
      setImmediate(() => (this.snapshot = undefined));
    }
    return this.snapshot;
  }

  /** Follows the current engine (a closed process-wide engine is replaced by a new one). */
  private attach(): void {
    const engine = this.getEngine();
    if (engine === this.attached) return;
    this.attached?.off('task', this.onTask);
    // Histograms of an engine that went away describe nothing that still runs.
    this.taskLatency.reset();
    this.inferLatency.reset();
    this.histogramLabels.clear();
    engine.on('task', this.onTask);
    this.attached = engine;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for one scrape. */
  async metrics(): Promise<string> {
    this.attach();
    this.snapshot = undefined;
    this.pruneHistograms();
    return this.registry.metrics();
  }

  /**
   * Drops the histogram series of graphs that were unloaded and devices that were removed: under
   * redeploys with changing graph names they would otherwise pile up for the life of the process.
   */
  private pruneHistograms(): void {
    const stats = this.stats();
    const graphs = new Set(Object.values(stats.graphs).map((g) => g.name));
    const devices = new Set(Object.values(stats.devices).filter((d) => !d.removed).map((d) => d.deviceId));
    for (const [key, labels] of this.histogramLabels) {
      if (graphs.has(labels.graph) && devices.has(labels.device)) continue;
      this.taskLatency.remove(labels);
      this.inferLatency.remove(labels);
      this.histogramLabels.delete(key);
    }
  }

  /** Stops listening to the engine (the histograms stay as they are). */
  detach(): void {
    this.attached?.off('task', this.onTask);
    this.attached = undefined;
  }
}
