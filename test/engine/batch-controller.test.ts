import assert from 'assert';
import { BatchController, RUN_SHARE } from '../../src/engine/pipeline/batcher';

/**
 * The adaptive controller over its latency target: a smaller batch is only chosen when the batch's
 * own run time is a material part of the p99 it has to lower.
 */
describe('batch controller over its target', function () {
  const options = { minBatchSize: 1, maxBatchSize: 32, maxDelayMs: 2, targetLatencyMs: 2, adaptive: true };

  /** One window of 32 full batches with the given task latency and batch run time. */
  function window(c: BatchController, clock: { t: number }, latencyMs: number, runMs: number): void {
    clock.t += 60;
    for (let i = 0; i < 32; i++) {
      c.onTask(latencyMs);
      c.onRun(runMs);
      c.onBatch(c.cap, 0);
    }
  }

  function grownTo(cap: number, clock: { t: number }): BatchController {
    const c = new BatchController(options, () => clock.t);
    while (c.cap < cap) window(c, clock, 1, 0.1);
    return c;
  }

  it('halves the cap when the batch run is a material part of p99', function () {
    const clock = { t: 0 };
    const c = grownTo(16, clock);
    const before = c.cap;
    window(c, clock, 4, 4 * RUN_SHARE * 1.5);
    assert.equal(c.cap, Math.floor(before / 2));
  });

  it('keeps growing full batches when p99 comes from elsewhere (runs a small part of it)', function () {
    const clock = { t: 0 };
    const c = grownTo(16, clock);
    const before = c.cap;
    window(c, clock, 4, 0.15);
    assert.ok(c.cap > before, `cap ${c.cap} after ${before}: a smaller batch would not lower a 4 ms p99 made of 0.15 ms runs`);
    for (let i = 0; i < 20; i++) window(c, clock, 4, 0.15);
    assert.equal(c.cap, 32, 'never above maxBatchSize');
  });

  it('still halves the wait for batch-mates whenever p99 is over the target', function () {
    const clock = { t: 0 };
    const c = new BatchController(options, () => clock.t);
    // headroom: the wait grows while batches stay short
    for (let i = 0; i < 10; i++) {
      clock.t += 60;
      for (let k = 0; k < 32; k++) {
        c.onTask(0.5);
        c.onRun(0.05);
        c.onBatch(1, 0);
      }
    }
    const before = c.delayMs;
    assert.ok(before > 0, `delay ${before}`);
    window(c, clock, 4, 0.05);
    assert.equal(c.delayMs, before / 2);
  });
});
