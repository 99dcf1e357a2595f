import { strict as assert } from 'assert';
import { buildMlp } from '../../src/engine/graph/builder';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2';
import { PerformanceAnalyzer, THRESHOLDS, transferBytes, USB2_BYTES_PER_SEC, USB3_BYTES_PER_SEC, type AnalyzeInput, type RecommendationId } from '../../src/engine/telemetry/analyzer';

/** Healthy figures: busy devices, nothing waiting, cool, quiet host, batching on: no rule fires. */
function healthy(): AnalyzeInput {
  return {
    throughputFps: 200,
    latencyMs: 10,
    deviceCount: 2,
    opsPerInference: 1e9,
    devices: [
      { deviceId: 's1', kind: 'sim-ncs2', usb: 3, occupancy: 0.7, utilization: 0.5 },
      { deviceId: 's2', kind: 'sim-ncs2', usb: 3, occupancy: 0.7, utilization: 0.5 },
    ],
    bytesPerInference: 150_000,
    batchSize: 1,
    batchable: true,
    batchingEnabled: false,
    queueDepth: 0,
    requestsInFlight: 8,
    eventLoopDelayP99Ms: 2,
    thermalSamples: [40, 41, 42, 43, 44, 45].map((t) => ({ temperatureC: t, latencyMs: 10 })),
    dropped: 0,
  };
}

function ids(input: AnalyzeInput): RecommendationId[] {
  return PerformanceAnalyzer.analyzePerformance(input).recommendations.map((r) => r.id).sort();
}

describe('PerformanceAnalyzer', function () {
  it('calculateTops is inferences/s x ops / 1e12', function () {
    assert.equal(PerformanceAnalyzer.calculateTops(97, 3.266e9), (97 * 3.266e9) / 1e12);
    assert.throws(() => PerformanceAnalyzer.calculateTops(-1, 1), RangeError);
  });

  it('estimateModelOps counts the graph: a 784-128-10 MLP is 2 x (784x128 + 128x10) MACs plus element-wise ops', async function () {
    const ops = await PerformanceAnalyzer.estimateModelOps(buildMlp({ inputSize: 784, hidden: [128], outputSize: 10 }));
    assert.equal(ops.macs, 784 * 128 + 128 * 10);
    assert.ok(ops.total >= 2 * ops.macs);
  });

  it('ceilings: published 1 TOPS per stick, measured for the CPU, null when a CPU peak is unmeasured', function () {
    const a = PerformanceAnalyzer.analyzePerformance(healthy());
    assert.equal(a.theoreticalTops, 2);
    assert.equal(a.totalTops, 0.2);
    assert.equal(a.topsPerDevice, 0.1);
    assert.ok(Math.abs(a.efficiencyVsTheoretical! - 0.1) < 1e-12);
    assert.equal(a.targetTops, 2);
    const cpu = PerformanceAnalyzer.analyzePerformance({ ...healthy(), deviceCount: 1, devices: [{ deviceId: 'cpu', kind: 'cpu', peakTops: null }] });
    assert.equal(cpu.theoreticalTops, null);
    assert.equal(cpu.efficiencyVsTheoretical, null);
    assert.equal(cpu.bandwidthUtilization, null, 'no link for the CPU');
    const measured = PerformanceAnalyzer.analyzePerformance({ ...healthy(), deviceCount: 1, devices: [{ deviceId: 'cpu', kind: 'cpu', peakTops: 0.4 }], targetTops: 1 });
    assert.equal(measured.theoreticalTops, 0.4);
    assert.equal(measured.progressToTarget, 0.2);
  });

  it('bandwidth: USB 3 per stick, USB 2 shared by the bus', function () {
    const a = PerformanceAnalyzer.analyzePerformance(healthy());
    assert.ok(Math.abs(a.bandwidthUtilization! - (100 * 150_000) / USB3_BYTES_PER_SEC) < 1e-12);
    const usb2 = healthy();
    usb2.devices = usb2.devices!.map((d) => ({ ...d, usb: 2 as const }));
    assert.ok(Math.abs(PerformanceAnalyzer.analyzePerformance(usb2).bandwidthUtilization! - (200 * 150_000) / USB2_BYTES_PER_SEC) < 1e-12);
  });

  it('healthy evidence gives no recommendation', function () {
    assert.deepEqual(ids(healthy()), []);
  });

  const cases: Array<[RecommendationId, (i: AnalyzeInput) => void]> = [
    ['raise-in-flight', (i) => i.devices!.forEach((d) => (d.occupancy = THRESHOLDS.idleOccupancy - 0.2))],
    ['enable-batching', (i) => i.devices!.forEach((d) => (d.utilization = THRESHOLDS.lowUtilization / 3))],
    ['thermal-throttling', (i) => (i.thermalSamples = [40, 42, 44, 46, 48, 50].map((t, k) => ({ temperatureC: t, latencyMs: 10 + 2 * k })))],
    ['host-cpu-saturated', (i) => (i.eventLoopDelayP99Ms = THRESHOLDS.eventLoopDelayP99Ms + 30)],
    ['link-bound', (i) => (i.bytesPerInference = USB3_BYTES_PER_SEC / 100)],
    ['add-device', (i) => {
      i.devices!.forEach((d) => (d.occupancy = 0.97));
      i.queueDepth = 12;
    }],
    ['queue-overflow', (i) => (i.dropped = 5)],
  ];
  for (const [id, apply] of cases) {
    it(`${id} appears exactly when its evidence is present, and names it`, function () {
      const input = healthy();
      apply(input);
      assert.deepEqual(ids(input), [id]);
      const rec = PerformanceAnalyzer.analyzePerformance(input).recommendations[0];
      assert.ok(Object.keys(rec.evidence).length > 0);
      for (const v of Object.values(rec.evidence)) if (typeof v === 'number') assert.ok(Number.isFinite(v));
    });
  }

  it('rules need their evidence: missing figures fire nothing', function () {
    assert.deepEqual(ids({ throughputFps: 10, latencyMs: 5, deviceCount: 1, opsPerInference: 1e6 }), []);
  });

  it('a rule does not fire on evidence just short of it', function () {
    const low = healthy();
    low.devices!.forEach((d) => (d.utilization = 0.05));
    low.batchingEnabled = true; // already batching: no advice to enable it
    low.batchable = true;
    assert.deepEqual(ids(low), []);
    const fixed = healthy();
    fixed.devices!.forEach((d) => (d.utilization = 0.05));
    fixed.batchable = false; // fixed batch dimension: batching impossible
    assert.deepEqual(ids(fixed), []);
    const hotButFlat = healthy();
    hotButFlat.thermalSamples = [40, 45, 50, 55, 60, 65].map((t) => ({ temperatureC: t, latencyMs: 10 }));
    assert.deepEqual(ids(hotButFlat), []);
    const idleWithBacklog = healthy();
    idleWithBacklog.devices!.forEach((d) => (d.occupancy = 0.2));
    idleWithBacklog.queueDepth = 3; // work waits while devices idle: not the producer's fault
    assert.deepEqual(ids(idleWithBacklog), []);
  });

  it('a saturated link suppresses "add a device"', function () {
    const i = healthy();
    i.devices!.forEach((d) => {
      d.occupancy = 0.97;
      d.usb = 2;
    });
    i.queueDepth = 4;
    i.bytesPerInference = 301_000; // 224x224x3 in FP16: 200/s is 60 MB/s, the whole USB 2 bus
    assert.deepEqual(ids(i), ['link-bound']);
  });

  describe('evidence read from a live engine', function () {
    this.timeout(60_000);
    let engine: InferenceEngine | undefined;
    afterEach(async function () {
      await engine?.close();
      engine = undefined;
    });

    const mlp = buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, seed: 5 });
    const feeds = () => ({ input: { type: 'float32' as const, dims: [1, 784], data: new Float32Array(784) } });

    it('a simulated USB 3 stick: published 1 TOPS ceiling, FP16 bytes over its link', async function () {
      engine = new InferenceEngine({ devices: [new SimNcs2Device({ id: 'stick', usb: 3 })] });
      const g = await engine.loadGraph(mlp, { name: 'mlp' });
      for (let i = 0; i < 20; i++) await engine.submit(g, feeds());
      const input = PerformanceAnalyzer.fromEngine(engine, g.id);
      assert.equal(input.devices![0].usb, 3);
      assert.equal(input.bytesPerInference, (784 + 10) * 2);
      assert.equal(input.opsPerInference, g.ops.total);
      const a = PerformanceAnalyzer.analyzePerformance(input);
      assert.equal(a.theoreticalTops, 1);
      assert.ok(a.throughputFps > 0 && a.totalTops > 0);
      assert.ok(a.bandwidthUtilization! > 0 && a.bandwidthUtilization! < 1);
    });

    it('a CPU device: no link (bandwidth null), ceiling only when its peak is measured', async function () {
      engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'cpu', workers: 1, threadsPerWorker: 1 })] });
      const g = await engine.loadGraph(mlp, { name: 'mlp' });
      for (let i = 0; i < 20; i++) await engine.submit(g, feeds());
      const input = PerformanceAnalyzer.fromEngine(engine, g.id);
      assert.equal(input.bytesPerInference, (784 + 10) * 4);
      const a = PerformanceAnalyzer.analyzePerformance(input);
      assert.equal(a.bandwidthUtilization, null);
      assert.equal(a.theoreticalTops, engine.getStats().devices.cpu.peakTops);
    });

    it('transferBytes: symbolic batch counts 1, unknown inner dims give undefined', function () {
      assert.equal(transferBytes({ inputs: [{ name: 'x', type: 'uint8', dims: ['N', 3, 224, 224] }], outputs: [{ name: 'y', type: 'float32', dims: ['N', 1000] }] } as never, true), 3 * 224 * 224 + 2000);
      assert.equal(transferBytes({ inputs: [{ name: 'x', type: 'float32', dims: ['N', 'H'] }], outputs: [] } as never, false), undefined);
    });
  });
});
