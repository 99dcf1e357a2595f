import { releasePooled } from '../../memory/memory-pool';
import type { Feeds } from '../../tensor';
import type { GraphEntry } from './graph-store';
import type { TaskResult } from './types';

/** One submission, from submit() until it resolves or fails (exactly once: `settled`). */
export interface Task {
  id: number;
  graph: GraphEntry;
  feeds: Feeds;
  batchSize: number;
  submittedAt: number;
  dispatchedAt: number;
  deadline?: number;
  deadlineTimer?: NodeJS.Timeout;
  /** Run only on this device (no retry elsewhere). */
  deviceId?: string;
  /** Run only on these devices (retries stay among them). */
  allowed?: string[];
  tried: Set<string>;
  retries: number;
  settled: boolean;
  /** Shape after the batch dimension (and allowed devices), for grouping into batches. */
  shapeKey?: string;
  resolve(result: TaskResult): void;
  reject(error: Error): void;
}

/** Returns pooled input buffers to their pool (moved ones are already detached and skipped). */
export function releaseFeeds(feeds: Feeds): void {
  if (typeof feeds !== 'object' || feeds === null) return;
  for (const t of Object.values(feeds)) if (t && ArrayBuffer.isView(t.data)) releasePooled(t.data);
}

/** Fails a task once; pooled inputs that never reached a device go back to their pool. */
export function failTask(task: Task, error: Error): void {
  if (task.settled) return;
  task.settled = true;
  releaseFeeds(task.feeds);
  if (task.deadlineTimer) clearTimeout(task.deadlineTimer);
  task.reject(error);
}
