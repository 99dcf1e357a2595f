/**
 * Test-side handle on a real Node-RED process (red-child.ts): start it, talk to its admin HTTP
 * API as the editor does, listen to the debug sidebar's websocket, ask for memory and engine
 * counts, stop it. Shared by the end-to-end and browser tests.
 */
import { fork, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createRequire } from 'module';
import { resolveNodeRedDir, ROOT } from './red-boot';
import type { ChildStats } from './red-child';

export type { ChildStats } from './red-child';

export interface FlowNode {
  id: string;
  type: string;
  z?: string;
  wires?: string[][];
  [key: string]: unknown;
}

/** One message of the debug sidebar, as the editor receives it. */
export interface DebugMessage {
  id: string;
  z?: string;
  name?: string;
  topic?: string;
  /** Node-RED encodes the value: objects arrive as JSON text with format 'Object'. */
  msg: string;
  format: string;
  property?: string;
  /** Set (20 = error, 30 = warn) when the message is a node's log entry, not a debug node's. */
  level?: number;
}

export interface StartOptions {
  nodeRedPath?: string;
  settings?: Record<string, unknown>;
  /** Keep the user directory after stop (debugging). */
  keepUserDir?: boolean;
  startTimeoutMs?: number;
}

interface Reply {
  type: 'ready' | 'failed' | 'reply';
  id?: number;
  port?: number;
  version?: string;
  node?: string;
  message?: string;
  result?: unknown;
  error?: string;
}

const LOG_LINES = 200;

export class RedProcess {
  readonly url: string;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly log: string[],
    private readonly userDir: string,
    private readonly keepUserDir: boolean,
    readonly port: number,
    readonly version: string,
    readonly nodeVersion: string,
    readonly nodeRedDir: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    child.on('message', (raw: unknown) => {
      const m = raw as Reply;
      if (m.type !== 'reply' || m.id === undefined) return;
      const waiter = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) waiter?.reject(new Error(m.error));
      else waiter?.resolve(m.result);
    });
    child.on('exit', (code, signal) => {
      this.exited = true;
      for (const w of this.pending.values()) w.reject(new Error(`Node-RED process exited (${code ?? signal}) before answering\n${this.logs()}`));
      this.pending.clear();
    });
  }

  static async start(options: StartOptions = {}): Promise<RedProcess> {
    const nodeRedDir = resolveNodeRedDir(options.nodeRedPath);
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-red-'));
    const log: string[] = [];
    const child = fork(path.join(__dirname, 'red-child.js'), [], {
      execArgv: ['--expose-gc'],
      env: { ...process.env, RED_CHILD_OPTIONS: JSON.stringify({ userDir, nodeRedPath: nodeRedDir, settings: options.settings }) },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Node-RED resolves relative paths in flows (file nodes) against its working directory.
      cwd: ROOT,
    });
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) log.push(line);
      if (log.length > LOG_LINES) log.splice(0, log.length - LOG_LINES);
      if (process.env.E2E_VERBOSE) process.stderr.write(chunk);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const ready = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`Node-RED did not start within ${options.startTimeoutMs ?? 60000} ms\n${log.join('\n')}`));
      }, options.startTimeoutMs ?? 60000);
      child.once('message', (m: unknown) => {
        clearTimeout(timer);
        resolve(m as Reply);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`Node-RED exited during start (code ${code})\n${log.join('\n')}`));
      });
    });
    if (ready.type !== 'ready') {
      child.kill('SIGKILL');
      throw new Error(`Node-RED failed to start: ${ready.message}\n${log.join('\n')}`);
    }
    return new RedProcess(child, log, userDir, options.keepUserDir ?? false, ready.port!, ready.version!, ready.node!, nodeRedDir);
  }

  /** The last lines Node-RED printed (for assertion messages). */
  logs(): string {
    return this.log.join('\n');
  }

  private call<T>(type: 'stats' | 'stop'): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`Node-RED process has exited\n${this.logs()}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ type, id });
    });
  }

  /** Memory after forced garbage collection, and the engine's open graphs and devices. */
  stats(): Promise<ChildStats> {
    return this.call<ChildStats>('stats');
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      await this.call('stop');
      await exited;
    }
    if (!this.keepUserDir) fs.rmSync(this.userDir, { recursive: true, force: true });
  }

  /** A request to the admin HTTP API, as the editor makes it. */
  async request(method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.url}${urlPath}`, {
      method,
      headers: { 'content-type': 'application/json', 'Node-RED-API-Version': 'v2', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Plain-text answers (e.g. POST /inject/:id says "OK") stay text.
    }
    return { status: res.status, body: parsed };
  }

  /**
   * POST /flows: what the editor's Deploy button does ('full' restarts every node). Node-RED
   * answers once the old nodes have stopped but before the new ones have started, and announces
   * the start on the comms websocket ('notification/runtime-deploy'); `comms` waits for that, so
   * the flow's nodes exist when this resolves.
   */
  async deploy(flows: FlowNode[], comms: DebugStream, type: 'full' | 'flows' | 'nodes' = 'full'): Promise<void> {
    const seen = comms.deployments;
    const res = await this.request('POST', '/flows', { flows }, { 'Node-RED-Deployment-Type': type });
    if (res.status !== 200) throw new Error(`POST /flows answered ${res.status}: ${JSON.stringify(res.body)}\n${this.logs()}`);
    await comms.waitForDeployment(seen, 30000);
  }

  /**
   * POST /inject/:id: the inject node's button in the editor. `props` replaces the node's own
   * properties for this one message, as the editor's "inject with these properties" does.
   */
  async inject(id: string, props?: Array<{ p: string; v: string; vt: string }>): Promise<void> {
    const res = await this.request('POST', `/inject/${id}`, props ? { __user_inject_props__: props } : undefined);
    if (res.status !== 200) throw new Error(`POST /inject/${id} answered ${res.status}: ${JSON.stringify(res.body)}`);
  }

  /** Listens to the debug sidebar (the /comms websocket), like an open editor does. */
  async debugStream(): Promise<DebugStream> {
    return DebugStream.connect(this.nodeRedDir, this.url.replace(/^http/, 'ws') + '/comms');
  }
}

interface WsLike {
  on(event: 'open' | 'close', cb: () => void): void;
  on(event: 'message', cb: (data: Buffer | string) => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  send(data: string): void;
  close(): void;
}

const DEPLOYED = 'notification/runtime-deploy';

export class DebugStream {
  readonly messages: DebugMessage[] = [];
  /** How many times the runtime announced that a deployment's flows have started. */
  deployments = 0;
  private waiters: Array<() => void> = [];

  private constructor(private readonly ws: WsLike) {
    ws.on('message', (data) => {
      // The server batches up to 50 {topic, data} entries into one frame.
      const frames = JSON.parse(data.toString()) as Array<{ topic: string; data: DebugMessage }>;
      for (const f of Array.isArray(frames) ? frames : [frames]) {
        if (f.topic === 'debug') this.messages.push(f.data);
        else if (f.topic === DEPLOYED) this.deployments++;
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves when more than `seen` deployments have been announced. */
  async waitForDeployment(seen: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.deployments <= seen) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the deployed flows did not start within ${timeoutMs} ms`);
      await this.changed(left);
    }
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  static async connect(nodeRedDir: string, url: string): Promise<DebugStream> {
    // The websocket client Node-RED's editor API itself depends on (Node 20 has no global WebSocket).
    const editorApi = createRequire(path.join(nodeRedDir, 'package.json')).resolve('@node-red/editor-api/package.json');
    const WebSocket = createRequire(editorApi)('ws') as new (url: string) => WsLike;
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => resolve());
      ws.on('error', reject);
    });
    const stream = new DebugStream(ws);
    ws.send(JSON.stringify({ subscribe: 'debug' }));
    ws.send(JSON.stringify({ subscribe: DEPLOYED }));
    // The runtime retains its last deploy notification and replays it to a new subscriber; count
    // from after that replay so that the next deploy is the next increment.
    await new Promise((resolve) => setTimeout(resolve, 200));
    stream.deployments = 0;
    return stream;
  }

  /** Waits until `count` messages satisfy `match`; returns them. */
  async waitFor(match: (m: DebugMessage) => boolean, count: number, timeoutMs: number, what: string): Promise<DebugMessage[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.filter(match);
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        const errors = this.messages.filter((m) => m.level === 20).map((m) => m.msg);
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${count} ${what}; got ${found.length}${errors.length ? `; node errors: ${errors.join(' | ')}` : ''}`);
      }
      await this.changed(left);
    }
  }

  clear(): void {
    this.messages.length = 0;
  }

  close(): void {
    this.ws.close();
  }
}
