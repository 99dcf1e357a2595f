import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Classification } from '../../src/engine/io/postprocess';
import type { InferenceReport } from '../../src/engine/io/infer';
import { getEngine } from '../../src/engine/pipeline/singleton';
import { readModelInfo } from '../../src/engine/graph/model-info';
import { parseGraphSettings } from '../../nodes/lib/settings';
import { NCS2_NODES, SAMPLES, buildFlow, collect, graphLease, helper, node, waitFor, useNodeRedServer } from './support';

describe('ncs2-graph: optimize on load', function () {
  this.timeout(60000);
  useNodeRedServer();

  let cacheRoot: string;
  let cacheDir: string;
  const savedCacheDir = process.env.NCS2_CACHE_DIR;
  beforeEach(function () {
    cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-graph-opt-'));
    cacheDir = path.join(cacheRoot, 'optimized');
    process.env.NCS2_CACHE_DIR = cacheRoot;
  });
  afterEach(function () {
    if (savedCacheDir === undefined) delete process.env.NCS2_CACHE_DIR;
    else process.env.NCS2_CACHE_DIR = savedCacheDir;
    fs.rmSync(cacheRoot, { recursive: true, force: true });
  });

  async function classifyAll(device = 'cpu-dev'): Promise<void> {
    const out = collect('out');
    const files = fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png'));
    for (const f of files) node('infer').receive({ payload: fs.readFileSync(path.join(SAMPLES, f)), file: f });
    await waitFor(() => out.length === files.length, `${files.length} results`);
    for (const msg of out) {
      assert.equal((msg.payload as Classification).label, String(msg.file).split('-')[1][0], String(msg.file));
      assert.equal((msg.inference as InferenceReport).device, device);
    }
  }

  it('int8: quantizes with the calibration folder, caches the file, classifies the samples right; a redeploy reuses the file', async function () {
    const flow = buildFlow({ graph: { optimize: 'int8', calibration: SAMPLES } });
    await helper.load(NCS2_NODES, flow);
    assert.equal((await graphLease().whenLoaded()).setup.handle.info.precision, 'int8');
    const files = fs.readdirSync(cacheDir).filter((f) => f.endsWith('.onnx'));
    assert.equal(files.length, 1);
    const made = fs.statSync(path.join(cacheDir, files[0])).ino;
    await classifyAll();

    // A changed graph config (another name) loads again: the optimized file comes from the cache.
    await helper.setFlows(flow.map((n) => ((n as { id: string }).id === 'graph' ? { ...n, name: 'again' } : n)));
    assert.equal((await graphLease().whenLoaded()).setup.handle.info.precision, 'int8');
    assert.deepEqual(fs.readdirSync(cacheDir).filter((f) => f.endsWith('.onnx')), files);
    assert.equal(readModelInfo(fs.readFileSync(path.join(cacheDir, files[0]))).precision, 'int8');
    assert.equal(fs.statSync(path.join(cacheDir, files[0])).ino, made, 'the cached file is used, not written again (a rewrite renames a new file into place)');
    await classifyAll();
  });

  it('fp16 on a simulated NCS2; int8 for it fails to load with the reason', async function () {
    await helper.load(NCS2_NODES, buildFlow({ device: { kind: 'sim-ncs2' }, graph: { optimize: 'fp16' } }));
    assert.equal((await graphLease().whenLoaded()).setup.handle.info.precision, 'fp16');
    await classifyAll('sim-ncs2-dev');
    const stats = getEngine().getStats().devices['sim-ncs2-dev'];
    assert.equal(stats.simulated, true);
    assert.equal(stats.completedTasks, fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.png')).length);

    await helper.unload();
    await helper.load(NCS2_NODES, buildFlow({ device: { kind: 'sim-ncs2' }, graph: { optimize: 'int8', calibration: SAMPLES } }));
    await assert.rejects(graphLease().whenLoaded(), /FP16 only/);
  });

  it('refuses int8 without calibration data, naming what is needed', function () {
    assert.throws(() => parseGraphSettings({ model: '', optimize: 'int8' }, undefined), /needs calibration data: a folder of sample images/);
    assert.throws(() => parseGraphSettings({ model: '', optimize: 'int4' }, undefined), /optimize must be one of none, fp16, int8, got "int4"/);
    assert.equal(parseGraphSettings({ model: '' }, undefined).optimize, false);
  });
});
