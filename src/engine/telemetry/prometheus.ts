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

    // Counters from the engine's totals: reset then inc to the total (prom-client counters have no set()).
    const graphCounter = (name: string, help: string, field: GraphCounterField) =>
      new Counter({
        name,
        help,
        labelNames: ['graph'] as const,
        registers,
        collect() {
          this.reset();
          for (const g of Object.values(stats().graphs)) this.inc({ graph: g.name }, g[field]);
        },
      });
    graphCounter('ncs2_tasks_submitted_total', 'Tasks submitted to a graph', 'submitted');
    graphCounter('ncs2_inferences_total', 'Tasks a graph completed', 'completed');
    graphCounter('ncs2_failures_total', 'Tasks that failed (after retries)', 'failed');
    graphCounter('ncs2_drops_total', 'Tasks the queue policy dropped (drop-oldest / drop-newest)', 'dropped');
    graphCounter('ncs2_rejections_total', 'Tasks refused because the queue was full (reject policy)', 'rejected');
    graphCounter('ncs2_expired_total', 'Tasks that missed their deadline', 'expired');
    graphCounter('ncs2_retries_total', 'Task runs retried on another device after a device error', 'retried');
    new Counter({
      name: 'ncs2_device_inferences_total',
      help: 'Tasks a device completed',
      labelNames: ['device'] as const,
      registers,
      collect() {
        this.reset();
        for (const d of Object.values(stats().devices)) this.inc({ device: d.deviceId }, d.completedTasks);
      },
    });
    new Counter({
      name: 'ncs2_device_failures_total',
      help: 'Runs that failed on a device',
      labelNames: ['device'] as const,
      registers,
      collect() {
        this.reset();
        for (const d of Object.values(stats().devices)) this.inc({ device: d.deviceId }, d.failedTasks);
      },
    });

    this.taskLatency = new Histogram({ name: 'ncs2_task_latency_seconds', help: 'Submission to result per task', labelNames: ['graph', 'device'] as const, buckets: LATENCY_BUCKETS, registers });
    this.inferLatency = new Histogram({ name: 'ncs2_infer_seconds', help: "The runtime's own time per run carrying the task", labelNames: ['graph', 'device'] as const, buckets: LATENCY_BUCKETS, registers });

    /** A gauge per device; a null value (not measured, no sensor) is left out rather than exported as 0. */
    const deviceGauge = (name: string, help: string, value: (d: EngineStats['devices'][string]) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['device'] as const,
        registers,
        collect() {
          this.reset();
          for (const d of Object.values(stats().devices)) {
            if (d.removed) continue;
            const v = value(d);
            if (v !== null && Number.isFinite(v)) this.set({ device: d.deviceId }, v);
          }
        },
      });
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
    type StageRow = EngineStats['pipeline']['stages'][keyof EngineStats['pipeline']['stages']];
    const presentStages = () => Object.values(stats().pipeline.stages).filter((st) => st.present);
    /** One series per present stage; counters follow the engine's totals (reset, then inc to the total). */
    const perStage = (kind: 'gauge' | 'counter', name: string, help: string, value: (st: StageRow) => number) => {
      const collect = function (this: Gauge<'stage'> | Counter<'stage'>): void {
        this.reset();
        for (const st of presentStages()) {
          if (this instanceof Gauge) this.set({ stage: st.stage }, value(st));
          else this.inc({ stage: st.stage }, value(st));
        }
      };
      const config = { name, help, labelNames: ['stage'] as const, registers, collect };
      return kind === 'gauge' ? new Gauge(config) : new Counter(config);
    };
    const stageGauge = (name: string, help: string, value: (st: StageRow) => number) => perStage('gauge', name, help, value);
    stageGauge('ncs2_stage_queue_depth', 'Requests waiting for a slot of the stage', (st) => st.queued);
    stageGauge('ncs2_stage_in_progress', 'Requests in the stage now', (st) => st.active);
    stageGauge('ncs2_stage_concurrency', 'Slots of the stage (requests it works on at once)', (st) => st.concurrency);
    stageGauge('ncs2_stage_busy_ratio', "Share of the stage's slots busy over the sliding window", (st) => st.busyShare);
    stageGauge('ncs2_stage_bottleneck', '1 for the stage that limits throughput now (busiest), 0 for the others', (st) => (stats().pipeline.bottleneck?.stage === st.stage ? 1 : 0));
    new Gauge({
      name: 'ncs2_stage_latency_seconds',
      help: 'Time in the stage per request once it had a slot (HDR histogram quantiles)',
      labelNames: ['stage', 'quantile'] as const,
      registers,
      collect() {
        this.reset();
        for (const st of presentStages()) {
          if (!st.serviceMs.count) continue;
          this.set({ stage: st.stage, quantile: '0.5' }, st.serviceMs.p50 / 1000);
          this.set({ stage: st.stage, quantile: '0.99' }, st.serviceMs.p99 / 1000);
        }
      },
    });
    const stageCounter = (name: string, help: string, value: (st: StageRow) => number) => perStage('counter', name, help, value);
    stageCounter('ncs2_stage_completed_total', 'Requests the stage finished', (st) => st.completed);
    stageCounter('ncs2_stage_failed_total', 'Requests that failed in the stage (a corrupt image in preprocess)', (st) => st.failed);
    stageCounter('ncs2_stage_rejected_total', "Requests refused because the stage's waiting queue was full", (st) => st.rejected);
    /** One series per device and direction (to_device, from_device). */
    const perDirection = (kind: 'gauge' | 'counter', name: string, help: string, value: (d: EngineStats['devices'][string]) => [number, number] | null) => {
      const collect = function (this: Gauge<'device' | 'direction'> | Counter<'device' | 'direction'>): void {
        this.reset();
        for (const d of Object.values(stats().devices)) {
          const v = value(d);
          if (!v) continue;
          (['to_device', 'from_device'] as const).forEach((direction, i) => {
            if (this instanceof Gauge) this.set({ device: d.deviceId, direction }, v[i]);
            else this.inc({ device: d.deviceId, direction }, v[i]);
          });
        }
      };
      const config = { name, help, labelNames: ['device', 'direction'] as const, registers, collect };
      return kind === 'gauge' ? new Gauge(config) : new Counter(config);
    };
    perDirection('counter', 'ncs2_device_transfer_bytes_total', "Bytes moved to and from a device (a stick's USB link; for a CPU device the tensors handed to its workers)", (d) => [d.transfer.bytesIn, d.transfer.bytesOut]);
    perDirection('gauge', 'ncs2_device_link_queue_depth', "Requests waiting for a stick's USB link, per direction", (d) => (d.removed || d.transfer.link === 'none' ? null : [d.queueDepths.toDevice, d.queueDepths.fromDevice]));
    deviceGauge('ncs2_device_link_utilization_ratio', "Busier direction's bytes/s over the stick's link payload rate (absent without a link)", (d) => d.transfer.bandwidthUtilization);

    new Gauge({
      name: 'ncs2_graph_queue_depth',
      help: "Tasks waiting in a graph's queue",
      labelNames: ['graph'] as const,
      registers,
      collect() {
        this.reset();
        for (const g of Object.values(stats().graphs)) this.set({ graph: g.name }, g.queueDepth);
      },
    });
    new Gauge({
      name: 'ncs2_graph_queue_capacity',
      help: "Bound of a graph's queue",
      labelNames: ['graph'] as const,
      registers,
      collect() {
        this.reset();
        for (const g of Object.values(stats().graphs)) this.set({ graph: g.name }, g.queueCapacity);
      },
    });
    new Gauge({
      name: 'ncs2_pool_hit_rate_ratio',
      help: 'Buffer requests served from a memory pool',
      labelNames: ['pool'] as const,
      registers,
      collect() {
        this.reset();
        for (const [pool, m] of Object.entries(stats().memory)) this.set({ pool }, m.bufferHitRate);
      },
    });
    new Gauge({
      name: 'ncs2_graph_cache_hit_rate_ratio',
      help: 'Graph loads served from the compiled-graph cache',
      registers,
      collect() {
        this.set(stats().graphCache.hitRate);
      },
    });
    new Gauge({
      name: 'ncs2_event_loop_delay_seconds',
      help: "Main thread's event-loop delay (beyond the timer's due time)",
      labelNames: ['quantile'] as const,
      registers,
      collect() {
        const e = stats().eventLoopDelayMs;
        this.set({ quantile: '0.5' }, e.p50 / 1000);
        this.set({ quantile: '0.99' }, e.p99 / 1000);
      },
    });
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
