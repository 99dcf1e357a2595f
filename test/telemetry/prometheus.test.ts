import { strict as assert } from 'assert';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { buildMlp } from '../../src/engine/graph/builder';
import { QueueFullError } from '../../src/engine/errors';
import { PrometheusExporter } from '../../src/engine/telemetry/prometheus';
import { parseExposition, sampleValue } from './exposition';

const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, seed: 3 });
const input = () => ({ input: { type: 'float32' as const, dims: [1, 784], data: new Float32Array(784).fill(0.5) } });

describe('Prometheus exposition (src/engine/telemetry/prometheus.ts)', function () {
  this.timeout(60_000);
  let engine: InferenceEngine;
  afterEach(async function () {
    await engine?.close();
  });

  it('parses strictly and round-trips the engine totals: counters, histogram counts and gauges', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu0', workers: 1, threadsPerWorker: 1 })] });
    const exporter = new PrometheusExporter(() => engine);
    // The first scrape attaches the task listener that feeds the histograms.
    const first = parseExposition(await exporter.metrics());
    assert.equal(first.get('ncs2_task_latency_seconds')?.type, 'histogram');

    const g = await engine.loadGraph(mlp, { name: 'mlp', queueCapacity: 4, queuePolicy: 'reject' });
    // A burst beyond the queue bound: some complete, the rest are rejected.
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => engine.submit(g, input())));
    const rejected = results.filter((r) => r.status === 'rejected' && r.reason instanceof QueueFullError).length;
    const completed = results.filter((r) => r.status === 'fulfilled').length;
    assert.ok(rejected > 0 && completed > 0, `${completed} completed, ${rejected} rejected`);
    for (let i = 0; i < 10; i++) await engine.submit(g, input());

    const text = await exporter.metrics();
    const m = parseExposition(text);
    const stats = engine.getStats();
    const gs = stats.graphs[g.id];
    const expectType = { ncs2_inferences_total: 'counter', ncs2_failures_total: 'counter', ncs2_drops_total: 'counter', ncs2_rejections_total: 'counter', ncs2_retries_total: 'counter', ncs2_task_latency_seconds: 'histogram', ncs2_device_in_flight: 'gauge', ncs2_graph_queue_depth: 'gauge', ncs2_device_utilization_ratio: 'gauge', ncs2_pool_hit_rate_ratio: 'gauge', ncs2_graph_cache_hit_rate_ratio: 'gauge', ncs2_event_loop_delay_p99_seconds: 'gauge' };
    for (const [name, type] of Object.entries(expectType)) assert.equal(m.get(name)?.type, type, name);

    assert.equal(sampleValue(m, 'ncs2_inferences_total', { graph: 'mlp' }), gs.completed);
    assert.equal(gs.completed, completed + 10);
    assert.equal(sampleValue(m, 'ncs2_rejections_total', { graph: 'mlp' }), rejected);
    assert.equal(sampleValue(m, 'ncs2_failures_total', { graph: 'mlp' }), 0);
    assert.equal(sampleValue(m, 'ncs2_device_inferences_total', { device: 'cpu0' }), stats.devices.cpu0.completedTasks);

    // Histogram: every completed task observed once; buckets cumulative, +Inf equals the count.
    const count = sampleValue(m, 'ncs2_task_latency_seconds_count', { graph: 'mlp', device: 'cpu0' }, 'ncs2_task_latency_seconds');
    assert.equal(count, gs.completed);
    const buckets = m.get('ncs2_task_latency_seconds')!.samples.filter((s) => s.name === 'ncs2_task_latency_seconds_bucket' && s.labels.device === 'cpu0');
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative buckets');
    assert.equal(buckets.at(-1)!.labels.le, '+Inf');
    assert.equal(buckets.at(-1)!.value, count);
    const sum = sampleValue(m, 'ncs2_task_latency_seconds_sum', { device: 'cpu0' }, 'ncs2_task_latency_seconds')!;
    assert.ok(sum > 0 && sum / count! < 10, 'mean latency in seconds');

    assert.equal(sampleValue(m, 'ncs2_graph_queue_depth', { graph: 'mlp' }), 0);
    assert.equal(sampleValue(m, 'ncs2_device_in_flight', { device: 'cpu0' }), 0);
    assert.equal(sampleValue(m, 'ncs2_device_simulated', { device: 'cpu0' }), 0);
    // No temperature sensor in the CPU device: the series is absent, not 0.
    assert.equal(m.get('ncs2_device_temperature_celsius')!.samples.length, stats.devices.cpu0.temperatureC === null ? 0 : 1);
    assert.ok(sampleValue(m, 'ncs2_event_loop_delay_p99_seconds', {})! >= 0);
    assert.match(exporter.contentType, /^text\/plain; version=0\.0\.4/);
    exporter.detach();
  });

  it('follows a replaced engine and starts its histograms afresh', async function () {
    let current = new InferenceEngine({ devices: [new CpuDevice({ id: 'a', workers: 1, threadsPerWorker: 1 })] });
    engine = current;
    const exporter = new PrometheusExporter(() => current);
    await exporter.metrics();
    const g = await current.loadGraph(mlp, { name: 'mlp' });
    await current.submit(g, input());
    assert.equal(sampleValue(parseExposition(await exporter.metrics()), 'ncs2_task_latency_seconds_count', { device: 'a' }, 'ncs2_task_latency_seconds'), 1);
    await current.close();
    current = new InferenceEngine({ devices: [new CpuDevice({ id: 'b', workers: 1, threadsPerWorker: 1 })] });
    engine = current;
    const m = parseExposition(await exporter.metrics());
    assert.equal(sampleValue(m, 'ncs2_task_latency_seconds_count', { device: 'a' }, 'ncs2_task_latency_seconds'), undefined);
    assert.equal(m.get('ncs2_inferences_total')!.samples.length, 0);
    exporter.detach();
  });

  it('drops the histogram series of a graph once it is unloaded, keeping the others', async function () {
    engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu0', workers: 1, threadsPerWorker: 1 })] });
    const exporter = new PrometheusExporter(() => engine);
    await exporter.metrics();
    const kept = await engine.loadGraph(mlp, { name: 'kept' });
    const other = buildMlp({ inputSize: 784, hidden: [64], outputSize: 10, seed: 4 });
    const gone = await engine.loadGraph(other, { name: 'gone' });
    await engine.submit(kept, input());
    await engine.submit(gone, input());
    const count = (m: ReturnType<typeof parseExposition>, graph: string) => sampleValue(m, 'ncs2_task_latency_seconds_count', { graph, device: 'cpu0' }, 'ncs2_task_latency_seconds');
    let m = parseExposition(await exporter.metrics());
    assert.deepEqual([count(m, 'kept'), count(m, 'gone')], [1, 1]);
    await engine.releaseGraph(gone, { free: true });
    m = parseExposition(await exporter.metrics());
    assert.deepEqual([count(m, 'kept'), count(m, 'gone')], [1, undefined]);
    assert.equal(sampleValue(m, 'ncs2_infer_seconds_count', { graph: 'gone', device: 'cpu0' }, 'ncs2_infer_seconds'), undefined);
    exporter.detach();
  });
});
