import { strict as assert } from 'assert';
import { StatusMeter } from '../../nodes/lib/status-meter';
import type { NodeStatus } from '../../nodes/lib/red';

const WORDS = { loading: 'loading', ready: 'ready', idle: 'idle', failed: 'failed', dropped: 'dropped' };

/** A meter on a clock the test moves; update() stands in for the timer's tick. */
function meterOnClock() {
  let now = 0;
  const shown: string[] = [];
  const meter = new StatusMeter({ status: (s: NodeStatus) => shown.push(s.text ?? ''), warnDrops: () => undefined, words: WORDS, intervalMs: 1000, windowMs: 10_000, now: () => now });
  meter.setState('ready', 'cpu');
  return {
    meter,
    shown,
    at(ms: number) {
      now = ms;
    },
  };
}

describe('StatusMeter rate badge', function () {
  it('reads a steady 1.0/s at one message a second, whatever the phase against its timer, and says idle once they stop', function () {
    const m = meterOnClock();
    const texts = new Set<string>();
    // Messages at 0.95 s, 1.95 s, ...: each timer interval gets one, and their arrival drifts against it.
    for (let second = 1; second <= 30; second++) {
      m.at(second * 1000 - 50 + (second % 3) * 20);
      m.meter.completed();
      m.at(second * 1000);
      m.meter.update();
      if (second >= 2) texts.add(m.shown[m.shown.length - 1]);
    }
    assert.deepEqual([...texts], ['1.0/s · cpu']);
    // Silence: the rate holds while the window still has completions, then idle (not 0/s, not ready).
    for (let second = 31; second <= 41; second++) {
      m.at(second * 1000);
      m.meter.update();
    }
    assert.equal(m.shown[m.shown.length - 1], 'idle · cpu');
  });

  it('says ready before the first message, and counts a burst at high rates', function () {
    const m = meterOnClock();
    assert.equal(m.shown[m.shown.length - 1], 'ready · cpu');
    for (let i = 0; i < 2000; i++) {
      m.at(i); // one per millisecond for 2 s
      m.meter.completed();
      if (i % 1000 === 999) m.meter.update();
    }
    assert.equal(m.shown[m.shown.length - 1], '1000/s · cpu');
  });
});
