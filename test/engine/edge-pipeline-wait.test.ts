import { strict as assert } from 'assert';
import { EdgePipeline, type FinishedTask } from '../../src/engine/pipeline/edge-pipeline';
import { WAIT_LIMITS } from '../../src/engine/pipeline/engine/graph-queue';
import { buildMlp } from '../../src/engine/graph/builder';
import { DeadlineExceededError, QueueFullError } from '../../src/engine/errors';

const model = buildMlp({ inputSize: 16, hidden: [8], outputSize: 3, seed: 11 });
const tensor = () => ({ type: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) });

/** Samples heap and resident memory every 20 ms while `work` runs; returns the peaks over the baseline. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; heapMb: number; rssMb: number }> {
  global.gc?.();
  const base = process.memoryUsage();
  let heap = base.heapUsed;
  let rss = base.rss;
  const sample = () => {
    const m = process.memoryUsage();
    heap = Math.max(heap, m.heapUsed);
    rss = Math.max(rss, m.rss);
  };
  const timer = setInterval(sample, 20);
  try {
    const result = await work();
    sample();
    return { result, heapMb: (heap - base.heapUsed) / 1048576, rssMb: (rss - base.rss) / 1048576 };
  } finally {
    clearInterval(timer);
  }
}

describe('EdgePipeline queue policy wait (the documented 10,000-submission loop)', function () {
  let pipeline: EdgePipeline;
  afterEach(async function () {
    await pipeline?.stop();
  });

  it('answers all 10,000 callback submissions of a loop, none with QueueFullError, in bounded memory', async function () {
    pipeline = new EdgePipeline({ deviceCount: 2 }).start();
    await pipeline.loadGraph('mlp', model);
    const input = tensor();
    let waitingAfterLoop = 0;
    const { result: finished, heapMb, rssMb } = await peakGrowth(
      () =>
        new Promise<FinishedTask[]>((resolve) => {
          const done: FinishedTask[] = [];
          for (let i = 0; i < 10_000; i++) {
            pipeline.submitTask('mlp', input, (task) => {
              done.push(task);
              if (done.length === 10_000) resolve(done);
            });
          }
          // the submissions reach the engine a microtask later
          setImmediate(() => (waitingAfterLoop = Object.values(pipeline.getStats().graphs)[0].waitingForRoom));
        }),
    );
    const errors = finished.filter((t) => t.error);
    assert.equal(errors.length, 0, `first error: ${errors[0]?.error?.message}`);
    assert.equal(new Set(finished.map((t) => t.id)).size, 10_000);
    assert.ok(finished.every((t) => t.outputs!.output.dims[1] === 3));
    const graph = Object.values(pipeline.getStats().graphs)[0];
    assert.deepEqual([graph.completed, graph.rejected, graph.dropped, graph.queuePolicy, graph.waitingForRoom, graph.waitingBytes], [10_000, 0, 0, 'wait', 0, 0]);
    assert.ok(waitingAfterLoop > 5_000, `${waitingAfterLoop} submissions waited for room after the loop`);
    // 10,000 waiting submissions of one shared tensor: task records only (about 1 KB each)
    assert.ok(heapMb < 96, `heap grew ${heapMb.toFixed(1)} MB`);
    assert.ok(rssMb < 256, `resident memory grew ${rssMb.toFixed(1)} MB`);
  });

  it('answers 10,000 awaited submissions, each with its own tensor', async function () {
    pipeline = new EdgePipeline({ deviceCount: 1, queueCapacity: 256 }).start();
    await pipeline.loadGraph('mlp', model);
    const results = await Promise.allSettled(Array.from({ length: 10_000 }, () => pipeline.run('mlp', tensor())));
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.equal(rejected.length, 0, `first rejection: ${(rejected[0] as PromiseRejectedResult | undefined)?.reason}`);
  });

  it('refuses a newcomer with the numbers once the waiting inputs reach the byte budget', async function () {
    const saved = { ...WAIT_LIMITS };
    WAIT_LIMITS.maxWaitingBytes = 64 * 1024;
    try {
      pipeline = new EdgePipeline({ deviceCount: 1, queueCapacity: 4 }).start();
      await pipeline.loadGraph('mlp', model);
      // each submission brings its own 64-byte buffer: 1,024 of them fill the 64 KB budget
      const results = await Promise.allSettled(Array.from({ length: 2_000 }, () => pipeline.run('mlp', tensor())));
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
      assert.ok(refused.length > 0 && refused.length < 2_000, `${refused.length} refused`);
      assert.ok(refused.every((e) => e instanceof QueueFullError && e.reason === 'rejected'));
      assert.match(refused[0].message, /queue of mlp is full \(4 queued\) and 1024 submissions already wait for room holding 0\.1 MB of inputs \(policy wait allows 65536 submissions and 0\.1 MB\)/);
      assert.equal(Object.values(pipeline.getStats().graphs)[0].rejected, refused.length);
    } finally {
      Object.assign(WAIT_LIMITS, saved);
    }
  });

  it('a deadline still ends a submission that waits for room, saying where it was', async function () {
    pipeline = new EdgePipeline({ deviceCount: 1, queueCapacity: 2 }).start();
    await pipeline.loadGraph('mlp', model);
    const input = tensor();
    const results = await Promise.allSettled(Array.from({ length: 500 }, () => pipeline.run('mlp', input, undefined, 1)));
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    assert.ok(errors.every((e) => e instanceof DeadlineExceededError), errors.find((e) => !(e instanceof DeadlineExceededError))?.message);
    assert.ok(errors.some((e) => /was still waiting for room in the full queue/.test(e.message)), 'a task expired in the wait line');
    const graph = Object.values(pipeline.getStats().graphs)[0];
    assert.equal(graph.completed + graph.expired, 500);
  });
});
