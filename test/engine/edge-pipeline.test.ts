import { strict as assert } from 'assert';
import { EdgePipeline, DevicePipeline, type FinishedTask } from '../../src/engine/pipeline/edge-pipeline';
import { MemoryPool } from '../../src/engine/memory/memory-pool';
import { buildMlp } from '../../src/engine/graph/builder';
import { InputError } from '../../src/engine/errors';

const model = buildMlp({ inputSize: 16, hidden: [8], outputSize: 3, seed: 11 });
const tensor = () => ({ type: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) });

describe('EdgePipeline (the promised pipeline API)', function () {
  let pipeline: EdgePipeline;
  afterEach(async function () {
    await pipeline?.stop();
  });

  it('splits the CPU into devices and runs tasks by callback and by await', async function () {
    pipeline = new EdgePipeline({ deviceCount: 2, maxParallelGraphsPerDevice: 4 }).start();
    await pipeline.loadGraph('mlp', model);
    const finished: FinishedTask[] = [];
    const ids = await new Promise<number[]>((resolve) => {
      const ids: number[] = [];
      for (let i = 0; i < 20; i++) {
        ids.push(
          pipeline.submitTask('mlp', tensor(), (task) => {
            finished.push(task);
            if (finished.length === 20) resolve(ids);
          }),
        );
      }
    });
    assert.deepEqual(finished.map((t) => t.id).sort((a, b) => a - b), ids);
    assert.ok(finished.every((t) => !t.error && t.outputs!.output.dims[1] === 3));
    const awaited = await pipeline.run('mlp', { input: tensor() });
    assert.deepEqual(Array.from(awaited.outputs.output.data as Float32Array), Array.from(finished[0].outputs!.output.data as Float32Array));
    const stats = pipeline.getStats();
    assert.equal(stats.deviceCount, 2);
    assert.deepEqual(Object.keys(stats.devices).sort(), ['cpu-0', 'cpu-1']);
    assert.equal(stats.devices['cpu-0'].completedTasks + stats.devices['cpu-1'].completedTasks, 21);
  });

  it('reports errors through the callback, with the task id', async function () {
    pipeline = new EdgePipeline({ deviceCount: 1 }).start();
    await pipeline.loadGraph('mlp', model);
    const task = await new Promise<FinishedTask>((resolve) => pipeline.submitTask('nope', tensor(), resolve));
    assert.ok(task.error instanceof InputError);
    assert.match(task.error.message, /graph 'nope' is not loaded; loaded: mlp/);
    assert.equal(typeof task.id, 'number');
  });

  it('DevicePipeline runs one device with the given pool', async function () {
    const pool = new MemoryPool({ deviceId: 'stick', poolSizeMb: 8 });
    pipeline = new DevicePipeline({ deviceId: 3, memoryPool: pool, maxParallelGraphs: 2, workers: 1 }).start();
    await pipeline.loadGraph('mlp', model);
    const r = await pipeline.run('mlp', tensor());
    assert.equal(r.deviceId, 'cpu-3');
    const used = pool.getStats();
    assert.ok(used.bufferHits + used.bufferMisses > 0, 'the device used the pool it was given');
  });

  it('refuses work before start', function () {
    assert.throws(() => new EdgePipeline().getStats(), /not started; call start\(\) first/);
  });
});
