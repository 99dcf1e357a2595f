/**
 * `ncs2 bench --device sim-ncs2` and `ncs2 plan`: simulated NCS2 sticks, paced in real time
 * (bench) or in virtual time (plan), from the same calibrated timing model.
 */
import { InferenceEngine, SimNcs2Device, planModelFile, simBenchVerdict, LatencyHistogram, elementCount, typedArrayCtor } from '../engine';
import type { ModelPlan, SimBenchVerdict, LatencySummary, Feeds, UsbGeneration } from '../engine';
import { resolveInputDims, type BenchModel } from './models';

export interface SimBenchResult {
  model: { name: string; description: string };
  sticks: number;
  usb: UsbGeneration;
  requestsInFlight: number;
  throughput: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  opsPerInference: number;
  tops: number;
  /** Achieved over the sticks' published 1 TOPS each. */
  utilization: number;
  simulated: true;
  verdict: SimBenchVerdict;
  plan: ModelPlan['plan'];
}

export async function runSimBench(model: BenchModel, opts: { sticks: number; usb: UsbGeneration; parallel?: number; durationS: number; warmupS: number; batch: number; shapes: Record<string, number[]> }): Promise<SimBenchResult> {
  const dims = resolveInputDims(model.info, opts.batch, opts.shapes);
  const sticks = Array.from({ length: opts.sticks }, (_, i) => new SimNcs2Device({ id: `sim-ncs2-${i}`, usb: opts.usb }));
  const engine = new InferenceEngine({ devices: sticks, queueCapacity: 100_000 });
  // enough outstanding to keep every stick's two executors and its USB link busy
  const inFlight = opts.parallel ?? 8 * opts.sticks;
  try {
    const graph = await engine.loadGraph(model.bytes, { name: model.name });
    const feeds: Feeds = {};
    for (const input of model.info.inputs) {
      const d = dims[input.name];
      feeds[input.name] = { type: input.type, dims: d, data: new (typedArrayCtor(input.type))(elementCount(d)) };
    }
    const latency = new LatencyHistogram();
    let completed = 0;
    const loop = async (until: number, record: boolean) => {
      while (performance.now() < until) {
        const r = await engine.submit(graph, feeds);
        if (record) {
          latency.record(r.timings.totalMs);
          completed++;
        }
      }
    };
    const warmEnd = performance.now() + opts.warmupS * 1000;
    await Promise.all(Array.from({ length: inFlight }, () => loop(warmEnd, false)));
    const before = sticks.map((s) => s.simStats());
    const start = performance.now();
    const end = start + opts.durationS * 1000;
    await Promise.all(Array.from({ length: inFlight }, () => loop(end, true)));
    const seconds = (performance.now() - start) / 1000;
    const after = sticks.map((s) => s.simStats());
    // host-late share within the measured window only
    const window = after.map((a, i) => {
      const done = a.completed - before[i].completed;
      const late = a.hostLateShare * a.completed - before[i].hostLateShare * before[i].completed;
      return { hostLateShare: done > 0 ? late / done : 0 };
    });
    const samplesPerTask = dims[model.info.inputs[0].name][0] ?? 1;
    const throughput = (completed * samplesPerTask) / seconds;
    const planned = await planModelFile(model.bytes, { sticks: opts.sticks, usb: opts.usb, requestsInFlight: inFlight });
    const opsPerInference = graph.ops.total;
    const s: LatencySummary = latency.summary();
    return {
      model: { name: model.name, description: model.description },
      sticks: opts.sticks,
      usb: opts.usb,
      requestsInFlight: inFlight,
      throughput,
      latencyMs: { p50: s.p50, p95: s.p95, p99: s.p99, max: s.maxMs },
      opsPerInference,
      tops: (throughput * opsPerInference) / 1e12,
      utilization: (throughput * opsPerInference) / (opts.sticks * 1e12),
      simulated: true,
      verdict: simBenchVerdict(throughput, planned.plan, window),
      plan: planned.plan,
    };
  } finally {
    await engine.close();
  }
}

export function planModel(model: BenchModel, opts: { sticks: number; usb: UsbGeneration; parallel?: number; usb2Buses?: number }): Promise<ModelPlan> {
  return planModelFile(model.bytes, { sticks: opts.sticks, usb: opts.usb, requestsInFlight: opts.parallel, usb2Buses: opts.usb2Buses });
}
