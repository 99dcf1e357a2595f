import { DeviceRegistry } from '../../src/engine/pipeline/engine/device-registry';
import { GraphStore, type GraphEntry } from '../../src/engine/pipeline/engine/graph-store';
import { Scheduler } from '../../src/engine/pipeline/engine/scheduler';
import type { Task } from '../../src/engine/pipeline/engine/task';
import type { EngineOptions, TaskResult } from '../../src/engine/pipeline/engine/types';
import type { Feeds } from '../../src/engine/tensor';
import { FakeDevice } from './fake-device';

/** The engine's parts wired as the facade wires them, without a dispatcher: for unit tests of one part. */
export function engineParts(devices: FakeDevice[], options: EngineOptions = {}) {
  const warnings: Error[] = [];
  const freed: string[] = [];
  let pumps = 0;
  const registry = new DeviceRegistry(options.thermal, (err) => warnings.push(err));
  for (const d of devices) registry.add(d);
  const scheduler = new Scheduler(registry);
  const store = new GraphStore({
    devices: registry,
    options,
    warn: (err) => warnings.push(err),
    pump: () => void pumps++,
    freed: (g) => {
      freed.push(g.id);
      scheduler.forgetGraph(g.id);
    },
  });
  return { registry, scheduler, store, warnings, freed, pumps: () => pumps };
}

export interface RecordedTask extends Task {
  outcome?: { result?: TaskResult; error?: Error };
}

/** A task as the dispatcher makes one; its outcome is recorded on it. */
export function makeTask(graph: GraphEntry | undefined, fields: Partial<Task> = {}): RecordedTask {
  const task: RecordedTask = {
    id: fields.id ?? 1,
    graph: graph as GraphEntry,
    feeds: {} as Feeds,
    batchSize: 1,
    submittedAt: performance.now(),
    dispatchedAt: 0,
    tried: new Set(),
    retries: 0,
    settled: false,
    resolve: (result) => (task.outcome = { result }),
    reject: (error) => (task.outcome = { error }),
    ...fields,
  };
  return task;
}
