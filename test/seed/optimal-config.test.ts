import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NCS2PerformanceOptimizer } from '../../src/engine/graph/optimizer';
import { getOptimalConfig } from '../../src/engine/pipeline/batch-optimizer';
import { EdgePipeline } from '../../src/engine/pipeline/edge-pipeline';
import { buildMlp } from '../../src/engine/graph/builder';
import { InputError } from '../../src/engine/errors';

describe('getOptimalConfig (derived from measurement, not constants)', function () {
  const model = buildMlp({ inputSize: 64, hidden: [64], outputSize: 8, seed: 9 });
  const savedDir = process.env.NCS2_CACHE_DIR;
  let dir: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'optimal-config-'));
    process.env.NCS2_CACHE_DIR = dir;
  });
  after(function () {
    if (savedDir === undefined) delete process.env.NCS2_CACHE_DIR;
    else process.env.NCS2_CACHE_DIR = savedDir;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('CPU: a measured batch sweep picks the batch size, cached per host and model hash', async function () {
    const options = { device: 'cpu' as const, maxBatchSize: 4, targetLatencyMs: 200, durationMs: 100 };
    const first = await getOptimalConfig(model, 1, options);
    assert.equal(first.cached, false);
    const sizes = first.evidence.measurements!.map((m) => m.batchSize);
    assert.deepEqual(sizes, [1, 2, 4]);
    assert.ok(first.evidence.measurements!.every((m) => m.samplesPerSec > 0 && m.runs > 0));
    const fastest = first.evidence.measurements!.filter((m) => m.p99Ms <= 200).reduce((a, b) => (b.samplesPerSec > a.samplesPerSec ? b : a));
    assert.equal(first.config.optimalBatchSize ?? 1, fastest.batchSize);
    assert.equal(first.config.enableBatching, fastest.batchSize > 1);
    assert.equal(first.simulated, false);
    assert.match(first.key, /onnxruntime-node \S+ \| 1 device\(s\) \| model [0-9a-f]{16} \|/);

    const again = await getOptimalConfig(model, 1, options);
    assert.equal(again.cached, true);
    assert.deepEqual(again.config, first.config);
    assert.ok(fs.existsSync(path.join(dir, 'optimal-config.json')));
    // another model is another entry: measured, not served from the cache
    const other = await getOptimalConfig(buildMlp({ inputSize: 64, hidden: [64], outputSize: 8, seed: 10 }), 1, options);
    assert.equal(other.cached, false);

    // the config it returns drives a pipeline
    const pipeline = new EdgePipeline({ deviceCount: 1, config: first.config }).start();
    assert.equal(pipeline.engine.getDevice('cpu-0')!.maxInFlight, first.config.pipelineDepth);
    await pipeline.stop();
  });

  it('sticks: requests in flight from the planner, FP16, flagged simulated', async function () {
    const result = await new NCS2PerformanceOptimizer({}).getOptimalConfig(model, 2);
    assert.equal(result.simulated, true);
    assert.equal(result.config.useFp16, true);
    const plans = result.evidence.plans!;
    assert.deepEqual(plans.map((p) => p.requestsInFlight), [2, 4, 6, 8, 12, 16]);
    const top = Math.max(...plans.map((p) => p.throughputFps));
    const chosen = plans.find((p) => p.requestsInFlight === result.config.pipelineDepth! * 2)!;
    assert.ok(chosen.throughputFps >= 0.97 * top, `${chosen.throughputFps} vs best ${top}`);
    assert.ok(plans.filter((p) => p.requestsInFlight < chosen.requestsInFlight).every((p) => p.throughputFps < 0.97 * top), 'the smallest depth near the best');
  });

  it('refuses a device count that is not a positive integer', async function () {
    await assert.rejects(getOptimalConfig(model, 0), (err: Error) => err instanceof InputError && /deviceCount: expected an integer >= 1, got 0/.test(err.message));
  });
});
