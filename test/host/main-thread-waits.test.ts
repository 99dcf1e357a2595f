import { strict as assert } from 'assert';
import * as path from 'path';

// scripts/ is plain JS run as is (from dist/test/host: three levels up to the repository)
const { analyseTrace } = require(path.join(__dirname, '..', '..', '..', 'scripts', 'main-thread-waits.js')) as {
  analyseTrace(text: string, mainPid: string): Array<{ ms: number; cpu: number; holders: Array<{ tid: string; ms: number }> }>;
};

// tracefs lines as the kernel prints them (sched_wakeup and sched_switch), main thread 100
const TRACE = [
  '            node-100     [000] d..2. 1000.000000: sched_switch: prev_comm=node prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=libvips worker next_pid=200 next_prio=120',
  '            node-300     [001] d..2. 1000.000000: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=node next_pid=300 next_prio=120',
  // woken to CPU 0 at 1000.001; libvips 200 keeps it 3 ms, then 400 for 1 ms, then main runs: a 4 ms wait
  '            node-300     [001] d..3. 1000.001000: sched_wakeup: comm=node pid=100 prio=120 target_cpu=000',
  '  libvips worker-200     [000] d..2. 1000.004000: sched_switch: prev_comm=libvips worker prev_pid=200 prev_prio=120 prev_state=R ==> next_comm=node next_pid=400 next_prio=120',
  '            node-400     [000] d..2. 1000.005000: sched_switch: prev_comm=node prev_pid=400 prev_prio=120 prev_state=R ==> next_comm=node next_pid=100 next_prio=120',
  // a wake-up of another thread is not the main thread's
  '            node-100     [000] d..3. 1000.005500: sched_wakeup: comm=node pid=300 prio=120 target_cpu=001',
  // main sleeps, is woken to the idle CPU 1 and runs 0.1 ms later
  '            node-100     [000] d..2. 1000.006000: sched_switch: prev_comm=node prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120',
  '            node-300     [001] d..2. 1000.006000: sched_switch: prev_comm=node prev_pid=300 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120',
  '          <idle>-0       [001] dNh4. 1000.007000: sched_wakeup: comm=node pid=100 prio=120 target_cpu=001',
  '          <idle>-0       [001] d..2. 1000.007100: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=node next_pid=100 next_prio=120',
  '# a comment line and a truncated one are skipped',
  '            node-1',
].join('\n');

describe('scripts/main-thread-waits: who held the core while the main thread waited', function () {
  it('measures each wait from wake-up to running, longest first, and attributes it to the threads on that CPU', function () {
    const waits = analyseTrace(TRACE, '100');
    assert.equal(waits.length, 2);
    assert.equal(waits[0].cpu, 0);
    assert.ok(Math.abs(waits[0].ms - 4) < 1e-6, `first wait 4 ms, got ${waits[0].ms}`);
    assert.deepEqual(waits[0].holders.map((h) => [h.tid, Math.round(h.ms * 1000) / 1000]), [['200', 3], ['400', 1]]);
    assert.equal(waits[1].cpu, 1);
    assert.ok(Math.abs(waits[1].ms - 0.1) < 1e-6, `second wait 0.1 ms, got ${waits[1].ms}`);
    assert.deepEqual(waits[1].holders.map((h) => h.tid), ['0'], 'the idle CPU held it');
  });

  it('finds no waits for a thread that never ran', function () {
    assert.deepEqual(analyseTrace(TRACE, '999'), []);
  });
});
