import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InferenceEngine, type GraphHandle, type TaskResult } from './engine';
import { CpuDevice } from '../devices/cpu/cpu-device';
import { DEFAULT_BATCHING, type BatchingOptions } from './batcher';
import { LatencyHistogram } from '../telemetry/stats';
import { InputError, ModelLoadError } from '../errors';
import { elementCount, typedArrayCtor, type Feeds } from '../tensor';
import type { Device } from '../devices/device';
import type { OptimizationConfig } from '../graph/optimizer/seed-api';
import { hashModel, readModelInfo } from '../graph/model-info';
import { analyzeModelOffThread } from '../devices/sim-ncs2/analyze';
import type { UsbGeneration } from '../devices/sim-ncs2/timing';
import { planThroughput, type Plan } from '../planner/planner';
import { peakCacheDir, peakKeyFor } from '../telemetry/peak';

/**
 * The original design's BatchProcessor: a batching policy applied to graphs loaded through it.
 * The batching itself is the engine's (see batcher.ts); this keeps the promised names.
 */
export class BatchProcessor {
  readonly options: Required<BatchingOptions>;

  constructor(options: BatchingOptions = {}) {
    this.options = { ...DEFAULT_BATCHING, ...options };
  }

  loadGraph(engine: InferenceEngine, model: string | Uint8Array): Promise<GraphHandle> {
    return engine.loadGraph(model, { batching: this.options });
  }

  submit(engine: InferenceEngine, graph: GraphHandle, feeds: Feeds): Promise<TaskResult> {
    return engine.submit(graph, feeds);
  }
}

export interface BatchMeasurement {
  batchSize: number;
  samplesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  runs: number;
}

/**
 * Finds the batch size with the highest measured throughput whose p99 latency per run stays within
 * the target, by running the model at batch 1, 2, 4, ... up to maxBatchSize. Measures; assumes nothing.
 */
export const BatchOptimizer = {
  async findOptimalBatchSize(
    model: string | Uint8Array,
    inputShape: number[],
    options: { maxBatchSize?: number; targetLatencyMs?: number; durationMs?: number; devices?: Device[] } = {},
  ): Promise<{ batchSize: number; withinTarget: boolean; measurements: BatchMeasurement[] }> {
    const maxBatch = options.maxBatchSize ?? 32;
    const target = options.targetLatencyMs ?? DEFAULT_BATCHING.targetLatencyMs;
    const duration = options.durationMs ?? 300;
    const engine = new InferenceEngine({ devices: options.devices ?? [new CpuDevice({ id: 'cpu' })] });
    try {
      const graph = await engine.loadGraph(model);
      if (graph.info.inputs.length !== 1) throw new InputError(`findOptimalBatchSize takes single-input models; ${graph.name} has ${graph.info.inputs.length}`);
      const input = graph.info.inputs[0];
      if (typeof input.dims[0] !== 'string') throw new InputError(`input '${input.name}' has a fixed batch dimension (${input.dims[0]}); there is no batch size to choose`);
      const rowDims = inputShape.length === input.dims.length ? inputShape.slice(1) : inputShape;
      const measurements: BatchMeasurement[] = [];
      for (let batch = 1; batch <= maxBatch; batch *= 2) {
        const dims = [batch, ...rowDims];
        const data = new (typedArrayCtor(input.type))(elementCount(dims));
        const feeds: Feeds = { [input.name]: { type: input.type, dims, data } };
        await engine.submit(graph, feeds); // warm-up
        const latency = new LatencyHistogram();
        let runs = 0;
        const start = performance.now();
        const parallel = Math.max(1, engine.listDevices().reduce((n, d) => n + d.parallelism, 0));
        await Promise.all(
          Array.from({ length: parallel }, async () => {
            while (performance.now() - start < duration) {
              const r = await engine.submit(graph, feeds);
              latency.record(r.timings.totalMs);
              runs++;
            }
          }),
        );
        const seconds = (performance.now() - start) / 1000;
        measurements.push({ batchSize: batch, samplesPerSec: (runs * batch) / seconds, p50Ms: latency.percentileMs(50), p99Ms: latency.percentileMs(99), runs });
      }
      const within = measurements.filter((m) => m.p99Ms <= target);
      const pool = within.length ? within : [measurements[0]];
      const best = pool.reduce((a, b) => (b.samplesPerSec > a.samplesPerSec ? b : a));
      return { batchSize: best.batchSize, withinTarget: within.length > 0, measurements };
    } finally {
      await engine.close();
    }
  },
};

/** What getOptimalConfig derived, and from what. */
export interface OptimalConfig {
  /** Only the keys the evidence decides; the rest keep the engine's defaults. */
  config: OptimizationConfig;
  device: 'cpu' | 'ncs2';
  deviceCount: number;
  /** Sticks are planned with the simulated stick's timing model, not measured on hardware. */
  simulated: boolean;
  /** CPU: the measured batch sweep; sticks: the plan per requests in flight per stick. */
  evidence: { measurements?: BatchMeasurement[]; reason?: string; plans?: Array<Pick<Plan, 'requestsInFlight' | 'throughputFps' | 'latencyMs' | 'bottleneck'>> };
  /** From the per-host cache (no measurement this time). */
  cached: boolean;
  /** What the host, runtime and model were (the cache key). */
  key: string;
}

export interface OptimalConfigOptions {
  /** 'cpu' measures a batch sweep on this host; 'ncs2' (default) plans sticks. */
  device?: 'cpu' | 'ncs2';
  /** Sticks' USB generation (default 3). */
  usb?: UsbGeneration;
  /** p99 a run may take (ms; default the batching default). */
  targetLatencyMs?: number;
  maxBatchSize?: number;
  /** Per batch size measured (ms; default 300). */
  durationMs?: number;
  /** Measure again even when this host has the answer cached. */
  refresh?: boolean;
}

/** A throughput within this share of the best counts as the best: the smaller setting then wins (less latency). */
const NEAR_BEST = 0.97;

function optimalConfigCachePath(): string {
  return path.join(peakCacheDir(), 'optimal-config.json');
}

async function readConfigCache(): Promise<Record<string, OptimalConfig>> {
  try {
    return JSON.parse(await fs.readFile(optimalConfigCachePath(), 'utf8')) as Record<string, OptimalConfig>;
  } catch {
    return {}; // missing or unreadable: measuring again is the cure
  }
}

async function writeConfigCache(key: string, value: OptimalConfig): Promise<void> {
  await fs.mkdir(peakCacheDir(), { recursive: true });
  const cache = await readConfigCache();
  cache[key] = value;
  const tmp = `${optimalConfigCachePath()}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(cache, null, 2) + '\n');
  await fs.rename(tmp, optimalConfigCachePath()); // atomic: a reader never sees half a file
}

/** CPU: the batch size with the best measured throughput within the latency target, on `deviceCount` CPU devices. */
async function measureCpu(bytes: Uint8Array, deviceCount: number, options: OptimalConfigOptions): Promise<Pick<OptimalConfig, 'config' | 'evidence'>> {
  const info = readModelInfo(bytes);
  const input = info.inputs[0];
  const workers = Math.max(1, Math.floor(os.availableParallelism() / deviceCount));
  if (info.inputs.length !== 1 || typeof input.dims[0] === 'number') {
    // nothing to sweep: one request per worker keeps the device busy
    const why = info.inputs.length !== 1 ? `the model has ${info.inputs.length} inputs` : `input '${input.name}' has a fixed batch dimension (${input.dims[0]})`;
    return { config: { useInt8: false, useFp16: false, enableBatching: false, pipelineDepth: workers }, evidence: { reason: `${why}: no batch size to choose` } };
  }
  const rowDims = input.dims.slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const devices = Array.from({ length: deviceCount }, (_, i) => new CpuDevice({ id: `cpu-${i}`, workers, threadsPerWorker: 1 }));
  const best = await BatchOptimizer.findOptimalBatchSize(bytes, [1, ...rowDims], { maxBatchSize: options.maxBatchSize, targetLatencyMs: options.targetLatencyMs, durationMs: options.durationMs, devices });
  const batching = best.batchSize > 1;
  return {
    // forming batches of b on w workers takes b x w requests in flight per device
    config: { useInt8: false, useFp16: false, enableBatching: batching, ...(batching ? { optimalBatchSize: best.batchSize } : {}), pipelineDepth: best.batchSize * workers },
    evidence: { measurements: best.measurements },
  };
}

/** Sticks: requests in flight per stick from the planner (the simulated stick's timing model), FP16. */
async function planSticks(bytes: Uint8Array, deviceCount: number, options: OptimalConfigOptions): Promise<Pick<OptimalConfig, 'config' | 'evidence'>> {
  const profile = await analyzeModelOffThread(bytes);
  const model = { opsPerInference: profile.ops, inputBytes: profile.inputBytes, outputBytes: profile.outputBytes, depthwiseShare: profile.depthwiseShare };
  const plans = [1, 2, 3, 4, 6, 8].map((perStick) => planThroughput(model, { sticks: deviceCount, usb: options.usb ?? 3, requestsInFlight: perStick * deviceCount, completions: 400 }));
  const top = Math.max(...plans.map((p) => p.throughputFps));
  const chosen = plans.find((p) => p.throughputFps >= NEAR_BEST * top)!;
  return {
    // a stick runs FP16 only, one sample per request
    config: { useFp16: true, useInt8: false, enableBatching: false, pipelineDepth: chosen.requestsInFlight / deviceCount },
    evidence: { plans: plans.map((p) => ({ requestsInFlight: p.requestsInFlight, throughputFps: p.throughputFps, latencyMs: p.latencyMs, bottleneck: p.bottleneck })) },
  };
}

/**
 * The design's getOptimalConfig, derived from evidence instead of constants: a short measured
 * sweep for the CPU (cached per host, runtime and model hash, since it costs seconds), the planner
 * for sticks.
 */
export async function getOptimalConfig(model: string | Uint8Array, deviceCount: number, options: OptimalConfigOptions = {}): Promise<OptimalConfig> {
  if (!(Number.isInteger(deviceCount) && deviceCount >= 1)) throw new InputError(`deviceCount: expected an integer >= 1, got ${deviceCount}`);
  let bytes: Uint8Array;
  try {
    bytes = typeof model === 'string' ? await fs.readFile(model) : model;
  } catch (err) {
    throw new ModelLoadError(`cannot read model file ${model as string}: ${(err as Error).message}`);
  }
  const device = options.device ?? 'ncs2';
  const workers = Math.max(1, Math.floor(os.availableParallelism() / deviceCount));
  const host = device === 'cpu' ? peakKeyFor({ kind: 'cpu', workers, threadsPerWorker: 1 }) : `simulated ncs2 on usb ${options.usb ?? 3}`;
  const key = [host, `${deviceCount} device(s)`, `model ${hashModel(bytes).slice(0, 16)}`, `target ${options.targetLatencyMs ?? DEFAULT_BATCHING.targetLatencyMs} ms`, `max batch ${options.maxBatchSize ?? 32}`].join(' | ');
  if (device === 'cpu' && !options.refresh) {
    const cached = (await readConfigCache())[key];
    if (cached) return { ...cached, cached: true };
  }
  const derived = device === 'cpu' ? await measureCpu(bytes, deviceCount, options) : await planSticks(bytes, deviceCount, options);
  const result: OptimalConfig = { ...derived, device, deviceCount, simulated: device === 'ncs2', cached: false, key };
  if (device === 'cpu') await writeConfigCache(key, result);
  return result;
}
