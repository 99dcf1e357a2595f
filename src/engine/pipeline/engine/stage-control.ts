import type { Device } from '../../devices/device';
import { backgroundPriority, lowerBackgroundThreads, type BackgroundPriority } from '../../host/thread-priority';
import { STAGES, Stage, TUNE_MIN_SAMPLES, chooseStageConcurrency, tuneStageConcurrency, type ConcurrencyChoice, type StageName } from '../stages';

/**
 * The request stages and their concurrency. preprocess and postprocess run callers' work
 * (runInference) in bounded slots; infer and the transfers record what the devices report (their
 * concurrency is the devices' executors and links).
 */
export class StageControl {
  readonly stages: Record<StageName, Stage>;
  concurrency: ConcurrencyChoice;
  /** How decode and inference threads yield to the main thread (NCS2_BACKGROUND_PRIORITY; a bad value fails here). */
  private readonly backgroundPriority: BackgroundPriority = backgroundPriority();
  /** Requests through preprocess and infer when background threads were last looked for. */
  private workedAtLastRenice = 0;

  constructor(preprocessCapacity = 1024) {
    this.concurrency = chooseStageConcurrency(0);
    this.stages = {
      preprocess: new Stage('preprocess', { concurrency: this.concurrency.preprocess, capacity: preprocessCapacity }),
      toDevice: new Stage('toDevice', { concurrency: 1 }),
      infer: new Stage('infer', { concurrency: 1 }),
      fromDevice: new Stage('fromDevice', { concurrency: 1 }),
      postprocess: new Stage('postprocess', { concurrency: this.concurrency.postprocess }),
    };
  }

  /** Re-derives stage concurrency from the host and the registered CPU devices (unless set by hand). */
  chooseConcurrency(devices: Iterable<Device>): void {
    if (this.concurrency.fixed) return;
    let threads = 0;
    for (const d of devices) {
      if (d.kind !== 'cpu') continue;
      const w = Number(d.info.workers ?? d.parallelism);
      const t = Number(d.info.threadsPerWorker ?? 1);
      threads += (Number.isFinite(w) ? w : 1) * (Number.isFinite(t) ? t : 1);
    }
    this.concurrency = chooseStageConcurrency(threads);
    this.stages.preprocess.setConcurrency(this.concurrency.preprocess);
  }

  /**
   * Re-sizes the preprocess slots from measured stage times (see tuneStageConcurrency), within the
   * host's cap; does nothing until both the preprocess and the infer stage have TUNE_MIN_SAMPLES
   * samples, or when the slots were set by hand.
   */
  tune(devices: Iterable<Device>): void {
    if (this.concurrency.fixed) return;
    // Only the medians: a full snapshot summarises every histogram, 8 ms of event loop here each time.
    const pre = this.stages.preprocess.serviceMedian();
    const infer = this.stages.infer.serviceMedian();
    if (pre.count < TUNE_MIN_SAMPLES || infer.count < TUNE_MIN_SAMPLES || infer.p50 <= 0) return;
    let executors = 0;
    for (const d of devices) executors += d.parallelism;
    if (executors === 0) return;
    this.concurrency = tuneStageConcurrency(this.concurrency, (executors * 1000) / infer.p50, pre.p50);
    this.stages.preprocess.setConcurrency(this.concurrency.preprocess);
  }

  /** Sets a host stage's slots by hand, or 'auto' to derive them again from the host. */
  setConcurrency(stage: 'preprocess', slots: number | 'auto', reason: string | undefined, devices: Iterable<Device>): void {
    if (slots === 'auto') {
      this.concurrency.fixed = false;
      this.chooseConcurrency(devices);
      return;
    }
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`stage slots must be a positive integer or 'auto', got ${String(slots)}`);
    this.concurrency = { ...this.concurrency, [stage]: slots, fixed: true, reason: reason ?? `set to ${slots} by setStageConcurrency` };
    this.stages[stage].setConcurrency(slots);
  }

  /**
   * Lowers the priority of new decode and inference threads. libvips and libuv start their
   * threads on demand: look for new ones only while requests run.
   */
  lowerNewBackgroundThreads(): Promise<number> | undefined {
    const worked = this.stages.preprocess.completedCount + this.stages.infer.completedCount;
    if (worked === this.workedAtLastRenice) return undefined;
    this.workedAtLastRenice = worked;
    return lowerBackgroundThreads(this.backgroundPriority);
  }

  resetStats(): void {
    for (const name of STAGES) this.stages[name].reset();
  }
}
