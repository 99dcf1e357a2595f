import { strict as assert } from 'assert';
import * as fs from 'fs';
import { execFileSync } from 'child_process';
import sharp from 'sharp';
import { backgroundPriority, lowerBackgroundThreads } from '../../src/engine/host/thread-priority';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { buildMlp } from '../../src/engine/graph/builder';

/** Scheduling policy (SCHED_OTHER 0, SCHED_IDLE 5; field 41 of stat) and nice (field 19) of a thread. */
function schedOf(tid: string): { policy: number; nice: number } {
  const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { policy: Number(fields[38]), nice: Number(fields[16]) };
}

function threadsNamed(name: string): string[] {
  return fs.readdirSync('/proc/self/task').filter((tid) => {
    try {
      return fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === name;
    } catch {
      return false;
    }
  });
}

const SCHED_IDLE = 5;
const hasChrt = (() => {
  try {
    execFileSync('chrt', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('background threads yield to the main thread (host/thread-priority)', function () {
  it('reads NCS2_BACKGROUND_PRIORITY, nice by default, and refuses other values by name', function () {
    assert.equal(backgroundPriority({}), 'nice');
    assert.equal(backgroundPriority({ NCS2_BACKGROUND_PRIORITY: 'idle' }), 'idle');
    assert.throws(() => backgroundPriority({ NCS2_BACKGROUND_PRIORITY: 'low' }), /NCS2_BACKGROUND_PRIORITY must be one of idle, nice, normal; got "low"/);
  });

  it("nice: puts libvips' decode threads at nice 10 and leaves the process's other threads alone", async function () {
    const jpeg = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 10, g: 100, b: 200 } } }).jpeg().toBuffer();
    await Promise.all([1, 2].map(() => sharp(jpeg).resize(224, 224).raw().toBuffer()));
    const vips = threadsNamed('libvips worker');
    assert.ok(vips.length > 0, 'sharp ran its libvips worker threads');
    const others = fs.readdirSync('/proc/self/task').filter((tid) => {
      try {
        const s = schedOf(tid);
        return !vips.includes(tid) && s.policy === 0 && s.nice === 0;
      } catch {
        return false; // ended meanwhile
      }
    });
    await lowerBackgroundThreads('nice');
    for (const tid of vips) assert.equal(schedOf(tid).nice, 10, `decode thread ${tid} at nice 10`);
    for (const tid of others) {
      try {
        assert.deepEqual(schedOf(tid), { policy: 0, nice: 0 }, `thread ${tid} keeps its priority`);
      } catch (err) {
        if (fs.existsSync(`/proc/self/task/${tid}`)) throw err; // a thread that ended meanwhile has no priority to keep
      }
    }
  });

  it('a CPU device still starts its workers when NCS2_BACKGROUND_PRIORITY is bad (they take nice 10)', async function () {
    const before = process.env.NCS2_BACKGROUND_PRIORITY;
    process.env.NCS2_BACKGROUND_PRIORITY = 'lowest';
    const existing = new Set(fs.readdirSync('/proc/self/task'));
    const device = new CpuDevice({ id: 'priority-bad-env', workers: 1, threadsPerWorker: 1 });
    try {
      const graph = await device.load({ key: 'mlp', model: buildMlp({ inputSize: 4, hidden: [4], outputSize: 2, seed: 2 }), session: {} });
      assert.equal(graph.outputNames.length, 1);
      const niced = fs.readdirSync('/proc/self/task').filter((tid) => !existing.has(tid) && schedOf(tid).policy === 0 && schedOf(tid).nice === 10);
      assert.ok(niced.length >= 1, 'the worker runs at nice 10');
    } finally {
      if (before === undefined) delete process.env.NCS2_BACKGROUND_PRIORITY;
      else process.env.NCS2_BACKGROUND_PRIORITY = before;
      await device.close();
    }
  });

  it('idle: puts every thread but the main one in SCHED_IDLE (libvips, libuv pool, V8 helpers), and the helper does not keep the process alive', function () {
    // In a child process: this one's V8 and libuv threads must keep their priority for the other tests.
    const script = `
      const fs = require('fs');
      const sharp = require('sharp');
      const { lowerBackgroundThreads } = require(${JSON.stringify(require.resolve('../../src/engine/host/thread-priority'))});
      const policy = (tid) => { const s = fs.readFileSync('/proc/self/task/' + tid + '/stat', 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return [Number(f[38]), Number(f[16])]; };
      sharp({ create: { width: 64, height: 64, channels: 3, background: 'red' } }).png().toBuffer()
        .then(() => {
          const before = fs.readdirSync('/proc/self/task');
          return lowerBackgroundThreads('idle').then((n) => {
            const after = {};
            for (const tid of before) if (fs.existsSync('/proc/self/task/' + tid)) after[tid] = policy(tid);
            console.log(JSON.stringify({ pid: String(process.pid), lowered: n, after }));
          });
        });`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })) as { pid: string; lowered: number; after: Record<string, [number, number]> };
    const others = Object.keys(out.after).filter((tid) => tid !== out.pid);
    assert.ok(others.length >= 4, `V8, libuv and libvips threads were running: ${JSON.stringify(out.after)}`);
    assert.equal(out.lowered, others.length);
    for (const tid of others) assert.deepEqual(out.after[tid], hasChrt ? [SCHED_IDLE, 0] : [0, 10], `thread ${tid} lowered`);
    assert.deepEqual(out.after[out.pid], [0, 0], 'the main thread keeps SCHED_OTHER at nice 0');
  });

  /** Threads a new 1 x 2 CPU device starts (its worker and the onnxruntime thread in it), as {policy, nice}. */
  async function newDeviceThreads(priority: string | undefined): Promise<Array<{ policy: number; nice: number }>> {
    const before = process.env.NCS2_BACKGROUND_PRIORITY;
    if (priority === undefined) delete process.env.NCS2_BACKGROUND_PRIORITY;
    else process.env.NCS2_BACKGROUND_PRIORITY = priority;
    const existing = new Set(fs.readdirSync('/proc/self/task'));
    const device = new CpuDevice({ id: `priority-${priority ?? 'default'}`, workers: 1, threadsPerWorker: 2 });
    try {
      await device.load({ key: 'mlp', model: buildMlp({ inputSize: 16, hidden: [8], outputSize: 4, seed: 1 }), session: {} });
      return fs.readdirSync('/proc/self/task').filter((tid) => !existing.has(tid)).map(schedOf);
    } finally {
      if (before === undefined) delete process.env.NCS2_BACKGROUND_PRIORITY;
      else process.env.NCS2_BACKGROUND_PRIORITY = before;
      await device.close();
    }
  }

  it("a CPU device's workers and their onnxruntime threads run at nice 10 by default, in SCHED_IDLE when asked", async function () {
    const byDefault = await newDeviceThreads(undefined);
    assert.ok(byDefault.filter((t) => t.policy === 0 && t.nice === 10).length >= 2, `worker and onnxruntime thread at nice 10: ${JSON.stringify(byDefault)}`);
    const idle = await newDeviceThreads('idle');
    const lowered = idle.filter((t) => (hasChrt ? t.policy === SCHED_IDLE : t.nice === 10));
    assert.ok(lowered.length >= 2, `worker and onnxruntime thread in SCHED_IDLE: ${JSON.stringify(idle)}`);
    assert.deepEqual(schedOf(String(process.pid)).policy, 0, 'the main thread keeps SCHED_OTHER');
  });
});
