/**
 * The host compute behind simulated sticks. Every stick's outputs are computed for real by
 * onnxruntime on the CPU; sticks of one process share one CpuDevice (its worker threads), sized to
 * the cores, instead of a worker per stick: four sticks on a two-core host would otherwise be four
 * threads fighting over two cores, and the per-tick hand-off batching of one CpuDevice is what
 * keeps the host's cost per request low.
 *
 * Graphs are shared too: sticks loading the same prepared model get one session per worker.
 */
import { createHash } from 'crypto';
import * as os from 'os';
import { CpuDevice } from '../cpu/cpu-device';
import type { NamedTensor, OutputSpec, RunResult, SessionSettings } from '../device';

export interface ComputePoolOptions {
  /** Worker threads (default: the cores this process may use). */
  workers?: number;
  threadsPerWorker?: number;
}

export class SimComputePool {
  private device: CpuDevice | undefined;
  private users = 0;
  private readonly graphs = new Map<string, { refs: number; loading: Promise<unknown> }>();
  /** Host time spent computing outputs (sum of the runtime's own times), for "is the host the limit?". */
  hostComputeMs = 0;
  readonly workers: number;

  constructor(private readonly options: ComputePoolOptions = {}) {
    this.workers = Math.max(1, options.workers ?? os.availableParallelism());
  }

  /** A stick starts using the pool (the CpuDevice starts with the first). */
  acquire(): void {
    this.users++;
    if (!this.device) {
      this.device = new CpuDevice({ id: 'sim-ncs2-host', workers: this.workers, threadsPerWorker: this.options.threadsPerWorker ?? 1 });
    }
  }

  /** A stick stops using it; the last one closes the workers. */
  async release(): Promise<void> {
    if (this.users === 0) return;
    if (--this.users > 0) return;
    const device = this.device;
    this.device = undefined;
    this.graphs.clear();
    await device?.close();
  }

  private live(): CpuDevice {
    if (!this.device) throw new Error('sim-ncs2 compute pool used without acquire()');
    return this.device;
  }

  /** Loads a prepared model (once for all sticks); returns the key to run it with. */
  async load(model: Uint8Array, session: SessionSettings): Promise<string> {
    const level = session.graphOptimizationLevel ?? 'all';
    const nonFinite = session.nonFinite ?? 'error';
    const key = `sim-ncs2|${createHash('sha256').update(model).digest('hex').slice(0, 24)}|${level}|${nonFinite}`;
    let entry = this.graphs.get(key);
    if (!entry) {
      // The stick's compute is simulated on the CPU whatever providers were asked for.
      entry = { refs: 0, loading: this.live().load({ key, model, session: { graphOptimizationLevel: level, nonFinite } }) };
      this.graphs.set(key, entry);
    }
    entry.refs++;
    try {
      await entry.loading;
    } catch (err) {
      entry.refs--;
      if (this.graphs.get(key) === entry) this.graphs.delete(key);
      throw err;
    }
    return key;
  }

  async unload(key: string): Promise<void> {
    const entry = this.graphs.get(key);
    if (!entry || --entry.refs > 0) return;
    this.graphs.delete(key);
    await this.device?.unload(key);
  }

  async run(key: string, inputs: NamedTensor[], outputs?: OutputSpec[]): Promise<RunResult> {
    const result = await this.live().run({ graphKey: key, inputs, outputs });
    this.hostComputeMs += result.inferMs;
    return result;
  }
}

let shared: SimComputePool | undefined;

/** The process-wide pool simulated sticks use unless given another. */
export function sharedComputePool(): SimComputePool {
  shared ??= new SimComputePool();
  return shared;
}
