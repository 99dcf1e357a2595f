/**
 * Entry point of a separate Node-RED process for the end-to-end and browser tests (forked by
 * harness.ts with an IPC channel and --expose-gc). A process of its own because Node-RED's
 * runtime is a per-process singleton that the node tests (node-red-node-test-helper) in the same
 * mocha run have already initialised and stubbed, and so that memory figures measure Node-RED and
 * our nodes rather than the whole test run.
 *
 * Protocol: the child sends {type: 'ready', port, version, node}; the parent sends
 * {type: 'stats', id} or {type: 'stop', id} and gets {type: 'reply', id, result | error}.
 */
import * as path from 'path';
import { setImmediate as tick } from 'timers/promises';
import { bootNodeRed, ROOT, type BootedRed } from './red-boot';

export interface ChildStats {
  heapUsed: number;
  rss: number;
  external: number;
  arrayBuffers: number;
  /** null until the nodes have loaded the engine module (so we never create the engine first). */
  graphCount: number | null;
  deviceCount: number | null;
}

interface EngineModule {
  getEngine(): { graphCount(): number; listDevices(): unknown[] };
}

type Request = { type: 'stats' | 'stop'; id: number };

// The module the nodes take the process-wide engine from (nodes/ncs2-device.ts, ncs2-graph.ts).
const ENGINE_MODULE = path.join(ROOT, 'dist', 'src', 'engine', 'pipeline', 'singleton.js');

function reply(id: number, body: { result?: unknown; error?: string }): void {
  process.send?.({ type: 'reply', id, ...body });
}

async function stats(): Promise<ChildStats> {
  // Several rounds: finalizers and weak references free more on the second and third pass.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('red-child needs --expose-gc to measure memory after garbage collection');
  for (let i = 0; i < 4; i++) {
    gc();
    await tick();
  }
  const mem = process.memoryUsage();
  // The nodes own the engine's creation (options apply only to the first getEngine()), so look at
  // it only once their require() has loaded the module; ask only after a flow has used a graph.
  const loaded = require.cache[ENGINE_MODULE] !== undefined;
  const engine = loaded ? (require(ENGINE_MODULE) as EngineModule).getEngine() : undefined;
  return {
    heapUsed: mem.heapUsed,
    rss: mem.rss,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    graphCount: engine ? engine.graphCount() : null,
    deviceCount: engine ? engine.listDevices().length : null,
  };
}

async function main(): Promise<void> {
  const options = JSON.parse(process.env.RED_CHILD_OPTIONS ?? '{}') as { userDir: string; nodeRedPath?: string; settings?: Record<string, unknown> };
  let red: BootedRed;
  try {
    red = await bootNodeRed(options);
  } catch (err) {
    process.send?.({ type: 'failed', message: (err as Error).stack ?? String(err) });
    process.exit(1);
  }
  process.on('message', (raw: unknown) => {
    const msg = raw as Request;
    if (msg.type === 'stats') {
      stats().then(
        (result) => reply(msg.id, { result }),
        (err: Error) => reply(msg.id, { error: err.message }),
      );
    } else if (msg.type === 'stop') {
      red.stop().then(
        () => {
          reply(msg.id, { result: true });
          // Worker threads of the engine would keep the process alive; the runtime is stopped.
          setTimeout(() => process.exit(0), 20);
        },
        (err: Error) => {
          reply(msg.id, { error: err.message });
          setTimeout(() => process.exit(1), 20);
        },
      );
    }
  });
  // If the test process dies, do not outlive it.
  process.on('disconnect', () => process.exit(2));
  process.send?.({ type: 'ready', port: red.port, version: red.version, node: process.version });
}

void main();
