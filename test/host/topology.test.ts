import { strict as assert } from 'assert';
import { readFileSync, readdirSync } from 'fs';
import * as os from 'os';
import { formatCpuList, parseCpuList } from '../../src/engine/host/cpulist';
import { readCpuTopology } from '../../src/engine/host/cpu-topology';
import { CpuAffinityOptimizer, ortIntraOpAffinity } from '../../src/engine/host/affinity';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { buildMlp } from '../../src/engine/graph/builder';
import { fakeRoot } from './fake-sysfs';

const SYS = 'sys/devices/system/cpu';

/** An Intel hybrid part: 4 P-cores with SMT (CPUs 0-7) and 4 E-cores (8-11). */
function hybridFiles(): Record<string, string> {
  const files: Record<string, string> = {
    [`${SYS}/online`]: '0-11\n',
    'sys/devices/cpu_core/cpus': '0-7\n',
    'sys/devices/cpu_atom/cpus': '8-11\n',
  };
  for (let c = 0; c < 12; c++) {
    const siblings = c < 8 ? `${c & ~1}-${c | 1}` : String(c);
    files[`${SYS}/cpu${c}/topology/thread_siblings_list`] = `${siblings}\n`;
    files[`${SYS}/cpu${c}/topology/core_id`] = String(c < 8 ? c >> 1 : c - 4);
    files[`${SYS}/cpu${c}/topology/physical_package_id`] = '0';
  }
  return files;
}

/** Linux threads of this process and the CPUs each may run on. */
function threadAffinities(): Map<string, string> {
  const out = new Map<string, string>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'));
      if (m) out.set(tid, m[1].trim());
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}

describe('CPU topology and affinity', function () {
  it('parses and formats Linux CPU lists', function () {
    assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
    assert.deepEqual(parseCpuList('0-6:2'), [0, 2, 4, 6]);
    assert.equal(formatCpuList([11, 0, 1, 2, 3, 8, 10]), '0-3,8,10-11');
    assert.throws(() => parseCpuList('zero'), /not a CPU list/);
  });

  it('reads an Intel hybrid part: performance and efficiency cores, SMT siblings, the allowed set', function () {
    const fake = fakeRoot(hybridFiles());
    try {
      const t = readCpuTopology({ root: fake.root, procStatus: 'Name:\tnode\nCpus_allowed_list:\t0-11\n' });
      assert.equal(t.hybrid, true);
      assert.equal(t.hybridSource, 'intel cpu_core/cpu_atom');
      assert.deepEqual(t.performance, [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(t.efficiency, [8, 9, 10, 11]);
      assert.equal(t.smt, true);
      assert.deepEqual(t.physicalCores, [[0, 1], [2, 3], [4, 5], [6, 7], [8], [9], [10], [11]]);
      const opt = new CpuAffinityOptimizer({ topology: t });
      assert.deepEqual(opt.getPerformanceCores(), [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(opt.getPhysicalPerformanceCores(), [0, 2, 4, 6]);
      assert.deepEqual(opt.getEfficiencyCores(), [8, 9, 10, 11]);
      const plan = opt.setThreadAffinity([0, 2, 4, 6]);
      assert.deepEqual(plan.cpuDeviceOptions, { workers: 1, threadsPerWorker: 4, affinity: '3;5;7' });
      assert.equal(opt.getThreadAffinity(), plan);
      // A process restricted (taskset, cgroup) to CPUs 2-5 only gets those.
      const narrow = new CpuAffinityOptimizer({ root: fake.root, procStatus: 'Cpus_allowed_list:\t2-5\n' });
      assert.deepEqual(narrow.getPerformanceCores(), [2, 3, 4, 5]);
      assert.throws(() => narrow.setThreadAffinity([0, 9]), /core\(s\) 0, 9 are not available to this process; expected ids from 2-5/);
    } finally {
      fake.remove();
    }
  });

  it('reads Arm big.LITTLE capacities, and falls back to os.cpus() without sysfs', function () {
    const files: Record<string, string> = { [`${SYS}/online`]: '0-7' };
    for (let c = 0; c < 8; c++) files[`${SYS}/cpu${c}/cpu_capacity`] = c < 4 ? '446' : '1024';
    const arm = fakeRoot(files);
    const empty = fakeRoot({ 'README': 'no sysfs here' });
    try {
      const t = readCpuTopology({ root: arm.root, procStatus: '' });
      assert.equal(t.hybridSource, 'arm cpu_capacity');
      assert.deepEqual(t.performance, [4, 5, 6, 7]);
      assert.equal(t.smt, false);
      const none = readCpuTopology({ root: empty.root, procStatus: '' });
      assert.equal(none.online.length, os.cpus().length);
      assert.equal(none.hybrid, false);
      assert.deepEqual(new CpuAffinityOptimizer({ topology: none }).getPerformanceCores(), none.online);
    } finally {
      arm.remove();
      empty.remove();
    }
  });

  it("onnxruntime's affinity string: 1-based processor ids, one per pool thread beyond the caller", function () {
    assert.equal(ortIntraOpAffinity([1], 2), '2');
    assert.equal(ortIntraOpAffinity([0, 1], 3), '2;1');
    assert.equal(ortIntraOpAffinity([4, 5, 6], 3), '6;7');
    assert.throws(() => ortIntraOpAffinity([], 2), /at least one core/);
  });

  it('pins the cpu device\'s onnxruntime threads to the chosen core, as /proc shows', async function () {
    const opt = new CpuAffinityOptimizer();
    const allowed = opt.topology.allowed;
    assert.ok(allowed.length >= 1);
    assert.equal(allowed.length, os.availableParallelism());
    // On this 2-core host: core 1, then core 0.
    const targets = allowed.length >= 2 ? [allowed[1], allowed[0]] : [allowed[0]];
    for (const core of targets) {
      const plan = opt.setThreadAffinity([core]);
      const before = threadAffinities();
      const device = new CpuDevice({ id: `pinned-${core}`, ...plan.cpuDeviceOptions });
      try {
        await device.load({ key: 'mlp', model: buildMlp({ inputSize: 64, hidden: [64], outputSize: 8 }), session: {} });
        const r = await device.run({ graphKey: 'mlp', inputs: [{ name: 'input', type: 'float32', dims: [1, 64], data: new Float32Array(64).fill(0.1) }] });
        assert.equal(r.outputs.output.dims[1], 8);
        const fresh = [...threadAffinities()].filter(([tid]) => !before.has(tid));
        const pinned = fresh.filter(([, cpus]) => cpus === String(core));
        assert.ok(pinned.length >= 1, `a new thread allowed only on CPU ${core}; new threads: ${JSON.stringify(fresh)}`);
        if (allowed.length >= 2) assert.ok(fresh.some(([, cpus]) => cpus !== String(core)), 'the worker thread itself stays unpinned');
      } finally {
        await device.close();
      }
    }
  });
});
