import { closeEngine } from '../../src/engine/pipeline/singleton';
/**
 * Shared set-up for the node tests: the test helper (typed for what the tests use), the node
 * modules, a flow builder and small waiting utilities.
 */
import * as os from 'os';
import * as path from 'path';
import type { EventEmitter } from 'events';
import deviceNode = require('../../nodes/ncs2-device');
import graphNode = require('../../nodes/ncs2-graph');
import inferNode = require('../../nodes/ncs2-infer');
import type { GraphConfigNode } from '../../nodes/lib/config-nodes';
import type { NodeMessage, NodeStatus } from '../../nodes/lib/red';

export const ROOT = path.resolve(__dirname, '../../..');
export const SAMPLES = path.join(ROOT, 'models', 'mnist', 'samples');

export interface TestNode extends EventEmitter {
  id: string;
  type: string;
  receive(msg: NodeMessage): void;
}

export interface AdminResponse {
  status: number;
  body: unknown;
}

export interface TestHelper {
  init(runtimePath: string): void;
  startServer(done: (err?: unknown) => void): void;
  stopServer(done: (err?: unknown) => void): void;
  load(nodes: unknown[], flow: object[]): Promise<void>;
  unload(): Promise<void>;
  setFlows(flow: object[], type?: 'full' | 'nodes' | 'flows'): Promise<void>;
  getNode(id: string): TestNode | null;
  request(): { get(url: string): PromiseLike<AdminResponse> };
  /** Node-RED settings for the next server (merged over the defaults; {} resets them). */
  settings(userSettings: object): object;
}

export const helper = require('node-red-node-test-helper') as TestHelper;

/**
 * Node-RED settings for node tests: graph files may come from the system's temporary folder too,
 * where tests write the models they build (settings.js key ncs2.allowedModelRoots).
 */
export const TEST_SETTINGS = { ncs2: { allowedModelRoots: [os.tmpdir()] } };

/** Starts the test helper's server before each test; unloads, closes the engine and stops it after. */
export function useNodeRedServer(settings: object = TEST_SETTINGS): void {
  beforeEach(function (done) {
    helper.settings(settings);
    helper.startServer(done);
  });

  afterEach(async function () {
    await helper.unload();
    await closeEngine();
    await new Promise<void>((resolve, reject) => helper.stopServer((err) => (err ? reject(err) : resolve())));
  });
}
helper.init(require.resolve('node-red'));

export const NCS2_NODES = [deviceNode, graphNode, inferNode];

export interface FlowOptions {
  device?: Record<string, unknown>;
  graph?: Record<string, unknown>;
  /** Add a Catch for the tab (-> 'caught') and a Complete for the infer node (-> 'completed'). */
  observers?: boolean;
  /** Leave the infer node without a graph. */
  noGraph?: boolean;
}

export const TAB = 'tab1';

/** device -> graph -> infer -> helper 'out', plus optional Catch and Complete observers. */
export function buildFlow(options: FlowOptions = {}): object[] {
  const flow: object[] = [
    { id: TAB, type: 'tab', label: 'test' },
    { id: 'dev', type: 'ncs2-device', name: '', kind: 'cpu', workers: '1', threadsPerWorker: 'auto', maxInFlight: '', queueCapacity: 256, queuePolicy: 'reject', ...options.device },
    { id: 'graph', type: 'ncs2-graph', name: '', device: 'dev', model: '', preset: 'classification', topK: 3, labels: '', softmax: 'auto', ...options.graph },
    { id: 'infer', type: 'ncs2-infer', z: TAB, x: 100, y: 100, name: '', graph: options.noGraph ? '' : 'graph', wires: [['out']] },
    { id: 'out', type: 'helper', z: TAB, x: 300, y: 100 },
  ];
  if (options.observers) {
    flow.push(
      // scope null: every node on the tab (the test helper registers a core node type once per node of that type, so one Catch serves all).
      { id: 'catch', type: 'catch', z: TAB, x: 100, y: 200, scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: TAB, x: 300, y: 200 },
      { id: 'complete', type: 'complete', z: TAB, x: 100, y: 300, scope: ['infer'], uncaught: false, wires: [['completed']] },
      { id: 'completed', type: 'helper', z: TAB, x: 300, y: 300 },
    );
  }
  return flow;
}

export function node(id: string): TestNode {
  const n = helper.getNode(id);
  if (!n) throw new Error(`node ${id} is not deployed`);
  return n;
}

export function graphLease(id = 'graph') {
  const lease = (node(id) as unknown as GraphConfigNode).lease;
  if (!lease) throw new Error(`graph ${id} has no lease`);
  return lease;
}

/** Collects every message a helper node receives. */
export function collect(id: string): NodeMessage[] {
  const messages: NodeMessage[] = [];
  node(id).on('input', (msg: NodeMessage) => messages.push(msg));
  return messages;
}

/** Collects every status a node sets (the helper reports each call as a 'call:status' event). */
export function statuses(id: string): NodeStatus[] {
  const seen: NodeStatus[] = [];
  node(id).on('call:status', (call: { args: [NodeStatus] }) => seen.push(call.args[0]));
  return seen;
}

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A short pause in which nothing more should happen (for asserting absences after the fact). */
export function settle(ms = 100): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
