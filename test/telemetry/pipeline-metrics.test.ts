import { strict as assert } from 'assert';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { PrometheusExporter } from '../../src/engine/telemetry/prometheus';
import { PerformanceAnalyzer } from '../../src/engine/telemetry/analyzer';
import { buildStatsMessages } from '../../nodes/lib/stats-messages';
import { DataType, encodeModel, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { parseExposition, sampleValue } from './exposition';

/** uint8 [1, 3, 64, 64] -> Cast -> GlobalAveragePool: a model whose cost is its transfer. */
function u8Model(): Uint8Array {
  return encodeModel(
    makeModel({
      name: 'u8pool',
      node: [makeNode('Cast', ['x'], ['xf'], { to: { int: DataType.FLOAT } }), makeNode('GlobalAveragePool', ['xf'], ['y'])],
      initializer: [],
      input: [makeValueInfo('x', DataType.UINT8, [1, 3, 64, 64])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 3, 1, 1])],
    }),
  );
}

describe('per-stage statistics in Prometheus, the stats node messages and the analyzer', function () {
  this.timeout(30000);
  let engine: InferenceEngine;
  let stick: SimNcs2Device;
  const N = 6;

  before(async function () {
    stick = new SimNcs2Device({ id: 'stage-stick', registry: new StickRegistry() });
    engine = new InferenceEngine({ devices: [stick] });
    const g = await engine.loadGraph(u8Model(), { name: 'u8pool' });
    const data = new Uint8Array(3 * 64 * 64).fill(9);
    await Promise.all(
      Array.from({ length: N }, async () => {
        const feeds = await engine.preprocess(async () => ({ x: { type: 'uint8' as const, dims: [1, 3, 64, 64], data } }));
        const r = await engine.submit(g, feeds);
        return engine.postprocess(() => r.outputs.y.data[0]);
      }),
    );
  });

  after(async function () {
    await engine.close();
  });

  it('Prometheus: stage gauges and counters equal getStats(); transfer bytes per device and direction', async function () {
    const exporter = new PrometheusExporter(() => engine);
    const m = parseExposition(await exporter.metrics());
    const stats = engine.getStats();
    const st = stats.pipeline.stages;
    for (const name of ['preprocess', 'toDevice', 'infer', 'fromDevice', 'postprocess'] as const) {
      assert.equal(sampleValue(m, 'ncs2_stage_completed_total', { stage: name }), N, name);
      assert.equal(sampleValue(m, 'ncs2_stage_concurrency', { stage: name }), st[name].concurrency, name);
      assert.equal(sampleValue(m, 'ncs2_stage_queue_depth', { stage: name }), 0, name);
      const p99 = sampleValue(m, 'ncs2_stage_latency_p99_seconds', { stage: name });
      assert.ok(p99 !== undefined && Math.abs(p99 - st[name].serviceMs.p99 / 1000) < 1e-9, `${name} p99 ${p99}`);
      const busy = sampleValue(m, 'ncs2_stage_busy_ratio', { stage: name })!;
      assert.ok(busy >= 0 && busy <= 1, `${name} busy ${busy}`);
    }
    const bottlenecks = m.get('ncs2_stage_bottleneck')!.samples.filter((s) => s.value === 1);
    assert.equal(bottlenecks.length, 1);
    assert.equal(bottlenecks[0].labels.stage, stats.pipeline.bottleneck!.stage);
    const bytes = 3 * 64 * 64;
    assert.equal(sampleValue(m, 'ncs2_device_transfer_bytes_total', { device: stick.id, direction: 'to_device' }), N * bytes);
    assert.equal(sampleValue(m, 'ncs2_device_transfer_bytes_total', { device: stick.id, direction: 'from_device' }), N * 3 * 2);
    assert.equal(sampleValue(m, 'ncs2_device_link_queue_depth', { device: stick.id, direction: 'to_device' }), 0);
    const util = sampleValue(m, 'ncs2_device_link_utilization_ratio', { device: stick.id })!;
    assert.ok(util > 0 && util < 1);
    exporter.detach();
  });

  it('the stats node messages carry per-stage queue, busy share, p50/p99 and the bottleneck, and link MB/s', function () {
    const stats = engine.getStats();
    const { metrics } = buildStatsMessages(stats);
    const value = (topic: string) => metrics.find((x) => x.topic === topic)?.payload;
    for (const name of ['preprocess', 'toDevice', 'infer', 'fromDevice', 'postprocess']) {
      assert.equal(value(`stage ${name} queue`), 0);
      assert.equal(typeof value(`stage ${name} busy`), 'number');
      assert.equal(typeof value(`stage ${name} p99 ms`), 'number');
      assert.equal(value(`stage ${name} bottleneck`), stats.pipeline.bottleneck!.stage === name ? 1 : 0);
    }
    assert.ok((value(`${stick.id} MB/s to device`) as number) > 0);
    assert.equal(typeof value(`${stick.id} link utilization`), 'number');
  });

  it('the analyzer takes the measured bytes per inference (uint8 input as it crossed the link)', function () {
    const evidence = PerformanceAnalyzer.evidenceFromStats(engine.getStats());
    assert.equal(evidence.bytesPerInference, 3 * 64 * 64 + 3 * 2);
    const a = PerformanceAnalyzer.analyzePerformance({ ...evidence, devices: evidence.devices!.map((d) => ({ ...d, usb: 3 as const })) });
    assert.ok(a.bandwidthUtilization !== null && a.bandwidthUtilization > 0);
  });
});
