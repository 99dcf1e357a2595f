/**
 * Boots a real Node-RED runtime the way an embedding application does (RED.init + RED.start on
 * our own http server), with this repository loaded as a node module. Used in-process by the
 * real-runtime benchmark and, through red-child.ts, in a separate process by the end-to-end and
 * browser tests. Deliberately not node-red-node-test-helper: the helper stubs runtime internals
 * and wraps node methods in spies, so it proves neither loading nor speed.
 */
import * as fs from 'fs';
import type { EventEmitter } from 'events';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { createRequire } from 'module';

/** Compiled to dist/test/e2e/, so the repository root is three levels up. */
export const ROOT = path.resolve(__dirname, '../../..');

/** The part of Node-RED's embedding API (node-red/lib/red.js, 4.x and 5.x) used here. */
export interface RedRuntime {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  version(): string;
  readonly httpAdmin: http.RequestListener;
  readonly httpNode: http.RequestListener;
  /** Runtime events; 'runtime-event' {id: 'runtime-deploy'} follows the start of deployed flows. */
  readonly events: EventEmitter;
}

type ExpressApp = http.RequestListener & { use(pathOrHandler: string | http.RequestListener, handler?: http.RequestListener): void };

export interface BootOptions {
  /** The node-red package directory (or an install prefix holding node_modules/node-red). */
  nodeRedPath?: string;
  /** Node-RED's user directory (flows, credentials, context); created if missing. */
  userDir: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
  /** Merged over defaultSettings(). */
  settings?: Record<string, unknown>;
}

export interface BootedRed {
  RED: RedRuntime;
  server: http.Server;
  url: string;
  port: number;
  version: string;
  nodeRedDir: string;
  stop(): Promise<void>;
}

/**
 * Which Node-RED to run: NODE_RED_PATH (CI points it at a separate Node-RED 5 install) or the
 * node-red devDependency.
 */
export function resolveNodeRedDir(given: string | undefined = process.env.NODE_RED_PATH): string {
  if (!given) return path.dirname(require.resolve('node-red/package.json'));
  const candidates = [path.resolve(given), path.resolve(given, 'node_modules', 'node-red')];
  for (const dir of candidates) {
    const pkgFile = path.join(dir, 'package.json');
    if (fs.existsSync(pkgFile) && (JSON.parse(fs.readFileSync(pkgFile, 'utf8')) as { name?: string }).name === 'node-red') return dir;
  }
  throw new Error(`NODE_RED_PATH=${given} is neither a node-red package directory nor an install prefix with node_modules/node-red; install one with: npm install --prefix <dir> node-red@5`);
}

/**
 * Settings for a quiet, local, offline runtime. nodesDir points at the repository root, whose
 * package.json "node-red" section Node-RED then loads exactly as it would an installed module
 * (node files, icons, locales and examples/).
 */
export function defaultSettings(userDir: string): Record<string, unknown> {
  return {
    userDir,
    flowFile: 'flows.json',
    // A fixed key: otherwise Node-RED generates one and logs a warning on every start.
    credentialSecret: 'edge-infer-test-only',
    nodesDir: [ROOT],
    httpAdminRoot: '/',
    httpNodeRoot: '/api',
    uiHost: '127.0.0.1',
    logging: { console: { level: process.env.NODE_RED_LOG_LEVEL ?? 'warn', metrics: false, audit: false } },
    // No welcome tour, no telemetry consent prompt, no catalogue downloads: the editor stays usable
    // offline and nothing covers the palette in the browser test.
    editorTheme: { tours: false, palette: { catalogues: [] } },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    functionExternalModules: false,
  };
}

export async function bootNodeRed(options: BootOptions): Promise<BootedRed> {
  const nodeRedDir = resolveNodeRedDir(options.nodeRedPath);
  fs.mkdirSync(options.userDir, { recursive: true });
  const req = createRequire(path.join(nodeRedDir, 'package.json'));
  const RED = req(nodeRedDir) as RedRuntime;
  // express is Node-RED's own dependency; using its copy keeps 4.x and 5.x each with the version
  // they were tested with.
  const express = req('express') as () => ExpressApp;
  const app = express();
  const server = http.createServer(app);
  const settings: Record<string, unknown> = { ...defaultSettings(options.userDir), ...options.settings };
  RED.init(server, settings);
  app.use(settings.httpAdminRoot as string, RED.httpAdmin);
  app.use(settings.httpNodeRoot as string, RED.httpNode);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  await RED.start();
  const port = (server.address() as AddressInfo).port;
  let stopped: Promise<void> | undefined;
  return {
    RED,
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    version: RED.version(),
    nodeRedDir,
    stop() {
      stopped ??= (async () => {
        await RED.stop();
        // Editor websockets keep the server open; closeAllConnections ends them (Node >= 18.2).
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return stopped;
    },
  };
}
