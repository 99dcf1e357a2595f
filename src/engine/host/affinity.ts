/**
 * CpuAffinityOptimizer: which cores to run inference on, and the settings that pin the engine's
 * threads there.
 *
 * What the engine can pin is onnxruntime's intra-op thread pool: the session option
 * "session.intra_op_thread_affinities" (the CpuDevice passes its `affinity` option through).
 * onnxruntime 1.30's format, checked on this host: one entry per pool thread, separated by ';',
 * each a ','-list or 'a-b' range of 1-based logical processor ids (processor 1 is Linux CPU 0;
 * an id of 0 is refused with "Processor id must start from 1"). A pool of T threads has T - 1 of
 * them: the calling thread (the CpuDevice's worker thread) is never pinned by onnxruntime, and
 * Node has no API to pin it, so its placement is left to the kernel.
 */
import { InputError } from '../errors';
import { formatCpuList } from './cpulist';
import { readCpuTopology, type CpuTopology, type TopologyOptions } from './cpu-topology';

export interface AffinityPlan {
  /** Linux CPU ids (0-based) the onnxruntime pool threads are pinned to. */
  coreIds: number[];
  /** CpuDevice options that apply it: one worker, whose pool threads are pinned one per core. */
  cpuDeviceOptions: { workers: number; threadsPerWorker: number; affinity: string };
  /** What is and is not pinned, for a person reading the configuration. */
  description: string;
}

/** onnxruntime's affinity string for `threads` intra-op threads over 0-based `coreIds`. */
export function ortIntraOpAffinity(coreIds: readonly number[], threads: number): string {
  if (coreIds.length === 0) throw new InputError('expected at least one core id to pin to, got none');
  const entries: string[] = [];
  // Pool thread i (1..T-1) gets core i of the list (wrapping): thread 0 is the unpinned caller.
  for (let i = 1; i < threads; i++) entries.push(String(coreIds[i % coreIds.length] + 1));
  return entries.join(';');
}

export class CpuAffinityOptimizer {
  readonly topology: CpuTopology;
  private plan: AffinityPlan | undefined;

  constructor(options: TopologyOptions & { topology?: CpuTopology } = {}) {
    this.topology = options.topology ?? readCpuTopology(options);
  }

  /** Performance cores this process may use (all allowed cores on a non-hybrid CPU). */
  getPerformanceCores(): number[] {
    const allowed = new Set(this.topology.allowed);
    const p = this.topology.performance.filter((c) => allowed.has(c));
    return p.length > 0 ? p : [...this.topology.allowed];
  }

  getEfficiencyCores(): number[] {
    const allowed = new Set(this.topology.allowed);
    return this.topology.efficiency.filter((c) => allowed.has(c));
  }

  /**
   * Performance cores with one logical CPU per physical core: SMT siblings share a core's
   * execution units, so two compute threads on siblings gain little.
   */
  getPhysicalPerformanceCores(): number[] {
    const perf = new Set(this.getPerformanceCores());
    const out: number[] = [];
    for (const group of this.topology.physicalCores) {
      const first = group.find((c) => perf.has(c));
      if (first !== undefined) out.push(first);
    }
    return out;
  }

  /**
   * Plans pinning of the engine's compute threads to `coreIds` (0-based Linux CPU ids). Returns
   * (and remembers) the CpuDevice options that apply it: threadsPerWorker = max(2, cores) so at
   * least one pool thread exists to pin.
   */
  setThreadAffinity(coreIds: number[], options: { threadsPerWorker?: number } = {}): AffinityPlan {
    const cores = [...new Set(coreIds)];
    if (cores.length === 0) throw new InputError('setThreadAffinity: expected at least one core id, got none');
    const allowed = new Set(this.topology.allowed);
    const bad = cores.filter((c) => !Number.isInteger(c) || !allowed.has(c));
    if (bad.length > 0) {
      throw new InputError(`setThreadAffinity: core(s) ${bad.join(', ')} are not available to this process; expected ids from ${formatCpuList(this.topology.allowed)}`);
    }
    const threads = Math.max(2, options.threadsPerWorker ?? cores.length);
    const affinity = ortIntraOpAffinity(cores, threads);
    const pinned = affinity.split(';').map((x) => Number(x) - 1);
    this.plan = {
      coreIds: cores,
      cpuDeviceOptions: { workers: 1, threadsPerWorker: threads, affinity },
      description: `onnxruntime pool threads pinned to CPU ${pinned.join(', ')} (${threads} intra-op threads; the calling worker thread is left to the kernel)`,
    };
    return this.plan;
  }

  /** The last plan set, if any. */
  getThreadAffinity(): AffinityPlan | undefined {
    return this.plan;
  }
}
