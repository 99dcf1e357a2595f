import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';

/** The repository root (this file runs from dist/test/package/). */
const ROOT = path.resolve(__dirname, '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string; types: string; bin: Record<string, string> };

/**
 * The names the seed API (the Python design's modules, under TypeScript names) promises, with the
 * methods each must have, as a user gets them from require('@edge-infer/node-red-ncs2').
 */
const SEED_API: Record<string, string[]> = {
  getEdgePipeline: [],
  EdgePipeline: ['start', 'stop', 'submitTask', 'getStats'],
  DevicePipeline: [],
  BatchProcessor: [],
  MemoryPool: ['allocateBuffer', 'getBuffer', 'releaseBuffer', 'freeBuffer', 'mmapFile', 'cacheGraph', 'getCachedGraph', 'resetStats', 'clear', 'getStats'],
  getMemoryPoolManager: [],
  GraphOptimizer: ['optimizeGraph', 'quantizeToInt8'],
  NCS2PerformanceOptimizer: ['optimizeModel'],
  BatchOptimizer: ['findOptimalBatchSize'],
  ThermalOptimizer: ['getDeviceTemperature', 'getThermalHeadroom', 'shouldThrottle'],
  CpuAffinityOptimizer: ['getPerformanceCores', 'setThreadAffinity'],
  PerformanceAnalyzer: ['calculateTops', 'estimateModelOps', 'analyzePerformance'],
};
/** What the README's script examples and error tables use. */
const README_API = [
  'getEngine', 'closeEngine', 'InferenceEngine', 'CpuDevice', 'SimNcs2Device', 'createDevice',
  'optimizeModel', 'writeModelAtomic', 'formatReport', 'readModelInfo', 'countModelOps',
  'QueueFullError', 'DeadlineExceededError', 'InputError', 'ModelLoadError', 'DeviceError', 'EngineClosedError', 'ConfigError',
  'PrometheusExporter', 'LatencyHistogram', 'planThroughput', 'planModelFile', 'listSticks',
];

describe('the package entry (package.json main) is the whole public API', function () {
  const api = require(path.join(ROOT, pkg.main)) as Record<string, unknown>;

  for (const [name, methods] of Object.entries(SEED_API)) {
    it(`exports ${name}${methods.length ? ` with ${methods.join(', ')}` : ''}`, function () {
      const value = api[name] as (Record<string, unknown> & { prototype?: Record<string, unknown> }) | undefined;
      assert.ok(value !== undefined, `require('${pkg.main}').${name} is undefined`);
      for (const method of methods) {
        // Static (GraphOptimizer.optimizeGraph), on an object (BatchOptimizer) or on instances (new MemoryPool().clear).
        const fn: unknown = value[method] ?? value.prototype?.[method];
        assert.equal(typeof fn, 'function', `${name}.${method} is ${typeof fn}`);
      }
    });
  }
  for (const name of README_API) {
    it(`exports ${name}`, function () {
      assert.equal(typeof api[name], 'function', `require('${pkg.main}').${name} is ${typeof api[name]}`);
    });
  }

  it("PerformanceAnalyzer from the entry computes from its inputs and counts a model's ops from the graph", async function () {
    const { PerformanceAnalyzer, buildMlp } = api as unknown as typeof import('../../src/engine');
    // 1,000 inferences/s of 2e9 ops each: 2e12 ops/s = 2 TOPS.
    assert.equal(PerformanceAnalyzer.calculateTops(1000, 2e9), 2);
    const ops = await PerformanceAnalyzer.estimateModelOps(buildMlp({ inputSize: 8, hidden: [16], outputSize: 4, seed: 1 }));
    // One MatMul of 8x16 and one of 16x4 per sample, 2 ops per multiply-accumulate, plus the bias adds and activation.
    assert.ok(ops.total >= 2 * (8 * 16 + 16 * 4), `counted ${ops.total} ops`);
    const analysis = PerformanceAnalyzer.analyzePerformance({ throughputFps: 1000, latencyMs: 2, deviceCount: 1, opsPerInference: 2e9 });
    assert.equal(analysis.totalTops, 2);
    assert.equal(analysis.topsPerDevice, 2);
  });

  it('ships the declarations and the CLI that package.json names', function () {
    assert.ok(fs.existsSync(path.join(ROOT, pkg.types)), pkg.types);
    assert.match(fs.readFileSync(path.join(ROOT, pkg.types), 'utf8'), /PerformanceAnalyzer/);
    for (const bin of Object.values(pkg.bin)) assert.ok(fs.existsSync(path.join(ROOT, bin)), bin);
  });
});
