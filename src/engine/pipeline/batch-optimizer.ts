import { InferenceEngine, type GraphHandle, type TaskResult } from './engine';
import { CpuDevice } from '../devices/cpu/cpu-device';
import { DEFAULT_BATCHING, type BatchingOptions } from './batcher';
import { LatencyHistogram } from '../telemetry/stats';
import { InputError } from '../errors';
import { elementCount, typedArrayCtor, type Feeds } from '../tensor';
import type { Device } from '../devices/device';

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
