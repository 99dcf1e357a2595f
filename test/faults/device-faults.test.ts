import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as path from 'path';

const FIXTURE = path.join(__dirname, 'fixtures', 'device-faults.js');

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: Array<Record<string, unknown> & { event: string }>;
  stderr: string;
}

/** Runs a scenario in its own process: an abort there is its exit code (134), not the end of mocha. */
function runScenario(name: string, ...args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FIXTURE, name, ...args], { timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const events = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Outcome['events'][number]);
      const failure = err as (Error & { code?: number; signal?: NodeJS.Signals }) | null;
      resolve({ code: failure ? (failure.code ?? null) : 0, signal: failure?.signal ?? null, events, stderr });
    });
  });
}

function event(outcome: Outcome, name: string): Record<string, unknown> {
  const found = outcome.events.find((e) => e.event === name);
  assert.ok(found, `event '${name}' missing; got ${JSON.stringify(outcome.events)}; stderr: ${outcome.stderr.slice(0, 400)}`);
  return found;
}

describe('cpu device faults never end the process (each case in a child process)', function () {
  this.timeout(150_000);

  it('close() while a run is inside onnxruntime fails the run at once, resolves, and the process exits cleanly', async function () {
    const outcome = await runScenario('closeDuringRun');
    assert.equal(outcome.signal, null);
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.match(String(event(outcome, 'runFailed').message), /was closed while the task ran/);
    const closed = event(outcome, 'closed');
    assert.equal(closed.runSettled, true);
    assert.ok(Number(closed.ms) < 5000, `close took ${closed.ms} ms`);
    event(outcome, 'end');
  });

  it('process.exit() while a run is inside onnxruntime exits with its own code, not an abort', async function () {
    const outcome = await runScenario('exitDuringRun');
    assert.equal(event(outcome, 'exiting').runSettled, false, 'the run was still going when the process exited');
    assert.equal(outcome.signal, null);
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.doesNotMatch(outcome.stderr, /terminate called/);
  });

  it('an uncaught exception while a run is inside onnxruntime exits with code 1, not an abort', async function () {
    const outcome = await runScenario('throwDuringRun');
    assert.equal(event(outcome, 'throwing').runSettled, false);
    assert.equal(outcome.code, 1);
    assert.match(outcome.stderr, /uncaught on purpose/);
    assert.doesNotMatch(outcome.stderr, /terminate called/);
  });

  it('process.exit() while a worker creates a session exits cleanly', async function () {
    for (const delayMs of ['150', '300', '600']) {
      const outcome = await runScenario('exitDuringLoad', delayMs);
      assert.equal(outcome.code, 0, `exit after ${delayMs} ms: ${outcome.stderr}`);
      event(outcome, 'exiting');
    }
  });

  it('process.exit() while a simulated stick analyses a model in onnxruntime exits cleanly', async function () {
    for (const delayMs of ['300', '600']) {
      const outcome = await runScenario('exitDuringSimAnalysis', delayMs);
      assert.equal(outcome.code, 0, `exit after ${delayMs} ms: ${outcome.stderr}`);
      event(outcome, 'exiting');
    }
  });

  it('process.exit() while a one-shot worker counts a model\'s ops in onnxruntime exits cleanly', async function () {
    for (const delayMs of ['300', '600']) {
      const outcome = await runScenario('exitDuringOpCount', delayMs);
      assert.equal(outcome.code, 0, `exit after ${delayMs} ms: ${outcome.stderr}`);
      event(outcome, 'exiting');
    }
  });

  it('closing the engine during a big batched run fails the task and exits cleanly', async function () {
    const outcome = await runScenario('engineCloseDuringRun');
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.match(String(event(outcome, 'runFailed').message), /closed/);
    event(outcome, 'closed');
    event(outcome, 'end');
  });

  it('a 2 GiB input while the worker is busy fails its own task with an InputError naming the limit', async function () {
    const outcome = await runScenario('hugeInputWhileBusy');
    assert.equal(outcome.code, 0, outcome.stderr);
    const huge = event(outcome, 'hugeFailed');
    assert.equal(huge.name, 'InputError');
    assert.match(String(huge.message), /input 'input' is 2147483648 bytes; the largest tensor this device takes is 1073741824 bytes/);
    assert.equal(event(outcome, 'busyAnswered').answered, 50, 'the requests around it are untouched');
    event(outcome, 'end');
  });

  it('a worker that reaches its heap limit fails its tasks with a clear error and is replaced', async function () {
    const outcome = await runScenario('heapLimit');
    assert.equal(outcome.code, 0, outcome.stderr);
    const flood = event(outcome, 'flood');
    assert.ok(Number(flood.failed) > 0, 'an 8 MB heap cannot take 20,000 requests at once');
    assert.match(String(flood.message), /worker 0 failed: it ran out of memory \(its heap limit of 8 MB/);
    assert.deepEqual(event(outcome, 'after').after, [1, 10], 'the replacement worker answers');
  });

  for (const count of [11, 24]) {
    it(`${count} graphs in use at once, round-robin with 32 in flight: every task answers and the process exits cleanly`, async function () {
      const outcome = await runScenario('manyGraphs', String(count));
      assert.equal(outcome.code, 0, outcome.stderr);
      const done = event(outcome, 'done');
      assert.equal(done.failed, 0, `first failure: ${done.firstFailure}`);
      assert.equal(done.ok, 1741);
    });
  }
});
