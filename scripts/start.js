#!/usr/bin/env node
'use strict';
/**
 * `npm start`: Node-RED 4.1 (the devDependency) with this node set loaded and the MNIST example
 * flow deployed, so the debug sidebar shows the bundled real handwritten digits being classified.
 *
 *   PORT=1881 npm start        another port (default 1880)
 *   HOST=0.0.0.0 npm start     listen beyond this machine (default 127.0.0.1: the editor has no login)
 *   npm start -- --reset       put the example flow back, replacing the flows you deployed
 *
 * Node-RED's user directory is .node-red/ in the repository (git-ignored): flows you deploy are kept
 * there between runs. The repository itself is the node module: settings.nodesDir points at it and
 * Node-RED reads package.json's "node-red" section, as it would for an installed package.
 */
const fs = require('fs');
const http = require('http');
const path = require('path');
const { spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const USER_DIR = path.join(ROOT, '.node-red');
const FLOW_FILE = path.join(USER_DIR, 'flows.json');
const EXAMPLE = path.join(ROOT, 'examples', 'classify-mnist-digits.json');
const PORT = Number(process.env.PORT || 1880);
const HOST = process.env.HOST || '127.0.0.1';
const reset = process.argv.includes('--reset');

function fail(message) {
  console.error(`npm start: ${message}`);
  process.exit(1);
}

/** Builds when any node file that package.json promises Node-RED is missing (fresh clone). */
function buildIfNeeded() {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const nodes = Object.values((pkg['node-red'] && pkg['node-red'].nodes) || {});
  if (nodes.length === 0) fail('package.json has no "node-red".nodes section; nothing to load');
  const missing = nodes.filter((file) => !fs.existsSync(path.join(ROOT, file)));
  if (missing.length === 0) return;
  console.log(`Building (missing ${missing.join(', ')}) ...`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) fail('the build failed; see the output above');
}

/** First run (or --reset): the example flow becomes the deployed flow. Later runs keep yours. */
function seedFlows() {
  fs.mkdirSync(USER_DIR, { recursive: true });
  if (fs.existsSync(FLOW_FILE) && !reset) {
    console.log(`Using your flows in ${path.relative(ROOT, FLOW_FILE)} (npm start -- --reset restores the example).`);
    return;
  }
  if (!fs.existsSync(EXAMPLE)) fail(`example flow ${path.relative(ROOT, EXAMPLE)} is missing`);
  fs.copyFileSync(EXAMPLE, FLOW_FILE);
  console.log(`Deploying the example flow ${path.relative(ROOT, EXAMPLE)}.`);
}

async function main() {
  if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`PORT=${process.env.PORT} is not a port number`);
  buildIfNeeded();
  seedFlows();

  const RED = require('node-red');
  // Node-RED's own express, so the embedding matches what its CLI does.
  const express = require(require.resolve('express', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));
  const app = express();
  const server = http.createServer(app);
  const settings = {
    userDir: USER_DIR,
    flowFile: 'flows.json',
    nodesDir: [ROOT],
    uiHost: HOST,
    uiPort: PORT,
    httpAdminRoot: '/',
    httpNodeRoot: '/api',
    logging: { console: { level: 'info', metrics: false, audit: false } },
    // The debug sidebar should be the first thing a newcomer sees: no welcome tour over it, and no
    // telemetry consent prompt (its update check needs nodered.org, which may not be reachable).
    editorTheme: { tours: false },
    telemetry: { enabled: false, updateNotification: false },
  };
  RED.init(server, settings);
  app.use(settings.httpAdminRoot, RED.httpAdmin);
  app.use(settings.httpNodeRoot, RED.httpNode);

  await new Promise((resolve, reject) => {
    server.once('error', (err) => {
      if (err.code === 'EADDRINUSE') reject(new Error(`port ${PORT} on ${HOST} is in use; run with another, e.g. PORT=${PORT + 1} npm start`));
      else reject(err);
    });
    server.listen(PORT, HOST, resolve);
  });
  await RED.start();

  const shown = HOST === '0.0.0.0' || HOST === '::' ? '127.0.0.1' : HOST;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${server.address().port}/`;
  console.log('');
  console.log(`Node-RED ${RED.version()} with @edge-infer/node-red-ncs2 is running.`);
  console.log(`  Editor: ${url}`);
  console.log('  Open the Debug sidebar (bug icon, top right) to see the MNIST digits being classified.');
  console.log('  Ctrl-C stops it.');
  console.log('');

  let stopping = false;
  const stop = (signal) => {
    if (stopping) {
      // A second Ctrl-C: do not wait for nodes that take long to close.
      process.exit(130);
    }
    stopping = true;
    console.log(`\n${signal}: stopping Node-RED ...`);
    RED.stop()
      .then(() => {
        server.closeAllConnections();
        server.close();
        // The inference engine's worker threads would keep the process alive after the runtime stopped.
        process.exit(0);
      })
      .catch((err) => {
        console.error(err);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err) => fail(err.message));
