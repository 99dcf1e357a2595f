/**
 * The small part of Node-RED's runtime API these nodes use, typed here because node-red ships no
 * type declarations (and @types/node-red is not a dependency of this package).
 */
import type { EventEmitter } from 'events';

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export interface NodeMessage {
  payload?: unknown;
  _msgid?: string;
  [property: string]: unknown;
}

export type SendFunction = (msg: NodeMessage | Array<NodeMessage | null>) => void;
export type DoneFunction = (err?: Error) => void;

/** What the editor saved for a node: strings, numbers and booleans as the dialog wrote them. */
export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  z?: string;
}

export interface RedNode extends EventEmitter {
  id: string;
  type: string;
  name?: string;
  on(event: 'input', handler: (msg: NodeMessage, send: SendFunction, done: DoneFunction) => void): this;
  on(event: 'close', handler: (removed: boolean, done: () => void) => void): this;
  status(status: NodeStatus): void;
  log(message: unknown): void;
  warn(message: unknown): void;
  error(error: unknown, msg?: NodeMessage): void;
  debug(message: unknown): void;
  send(msg: NodeMessage): void;
  /** Delivers a message to this node's input, as a wire from another node does. */
  receive(msg: NodeMessage): void;
}

export interface AdminRequest {
  params: Record<string, string>;
  query: Record<string, unknown>;
}

export interface AdminResponse {
  status(code: number): AdminResponse;
  json(body: unknown): void;
}

export type AdminHandler = (req: AdminRequest, res: AdminResponse, next: () => void) => void;

export interface NodeAPI {
  nodes: {
    createNode(node: object, def: NodeDef): void;
    // `never` parameters accept any node constructor: each declares its own `this` and config shape.
    registerType(type: string, constructor: (this: never, def: never) => void, options?: object): void;
    getNode(id: string): unknown;
  };
  httpAdmin: { get(path: string, ...handlers: AdminHandler[]): void };
  auth: { needsPermission(permission: string): AdminHandler };
  settings: { userDir?: string; [name: string]: unknown };
  log: { warn(message: unknown): void; info(message: unknown): void; debug(message: unknown): void };
  _(key: string, substitutions?: Record<string, unknown>): string;
  /** The runtime's events ('flows:started' after a deploy); absent in some test helpers. */
  events?: EventEmitter;
}
