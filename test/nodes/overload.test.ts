import { strict as assert } from 'assert';
import { runOverload, slope, type OverloadResult } from '../../bench/overload';
import type { QueuePolicy } from '../../src/engine/pipeline/engine';

/** A short version of `npm run bench:overload`: 3x the sustainable rate for 2 s through the node controller. */
function overload(policy: QueuePolicy): Promise<OverloadResult> {
  return runOverload({ model: 'cnn', cnnSize: 64, durationS: 2, calibrateS: 1, overload: 3, policy, maxInFlight: 8, maxWaiting: 16, warmupS: 1, sampleMs: 200 });
}

function assertAccounted(r: OverloadResult): void {
  // Every message sent ended exactly once, in one of the four ways, and the node counted the same.
  assert.equal(r.unaccounted, 0, `sent ${r.sent}, answered ${r.answered}, dropped ${r.dropped}, rejected ${r.rejected}, failed ${r.failed}`);
  assert.deepEqual(r.nodeCounts, { received: r.sent, answered: r.answered, dropped: r.dropped, rejected: r.rejected, failed: r.failed, held: 0 });
  assert.equal(r.failed, 0, r.errors.join('; '));
  // Bounded: never more held than the node's limit, though the source offered 3x what it could run.
  assert.ok(r.maxHeld <= r.heldLimit, `held ${r.maxHeld} > limit ${r.heldLimit}`);
  assert.ok(r.answered > 0, 'some messages were answered');
  assert.ok(r.offeredPerSec > 2 * r.sustainablePerSec, `offered ${r.offeredPerSec.toFixed(0)}/s vs sustainable ${r.sustainablePerSec.toFixed(0)}/s: not an overload`);
}

describe('overload accounting (engine + InferController, short run)', function () {
  this.timeout(60000);

  it('drop-oldest at 3x the sustainable rate: answered + dropped == sent, drops counted, held within the limit', async function () {
    const r = await overload('drop-oldest');
    assertAccounted(r);
    assert.ok(r.dropped > 0, 'an overload must shed something');
    assert.equal(r.rejected, 0);
  });

  it('reject at 3x: answered + rejected-with-error == sent', async function () {
    const r = await overload('reject');
    assertAccounted(r);
    assert.ok(r.rejected > 0, 'an overload must refuse something');
    assert.equal(r.dropped, 0);
  });

  it('slope is the least-squares fit', function () {
    assert.equal(slope([0, 1, 2, 3], [1, 3, 5, 7]), 2);
    assert.equal(slope([0, 1, 2], [4, 4, 4]), 0);
    assert.equal(slope([5], [1]), 0);
  });
});
