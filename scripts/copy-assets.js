#!/usr/bin/env node
'use strict';
/**
 * Puts the editor files where Node-RED looks for them: each node's .html and locales/ beside its
 * compiled .js (dist/nodes/), and icons/ in dist/nodes/icons/ (Node-RED searches an icons folder
 * beside the node's .js). Plain Node, no dependencies; run after tsc (`npm run build`).
 */
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const target = path.join(root, 'dist', 'nodes');

function copyTree(from, to) {
  if (!fs.existsSync(from)) return 0;
  let copied = 0;
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const destination = path.join(to, entry.name);
    if (entry.isDirectory()) {
      copied += copyTree(source, destination);
    } else {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(source, destination);
      copied++;
    }
  }
  return copied;
}

// Only the top level of nodes/: the editor file of each node type sits beside its .js.
fs.mkdirSync(target, { recursive: true });
let html = 0;
for (const name of fs.readdirSync(path.join(root, 'nodes'))) {
  if (!name.endsWith('.html')) continue;
  fs.copyFileSync(path.join(root, 'nodes', name), path.join(target, name));
  html++;
}
const locales = copyTree(path.join(root, 'nodes', 'locales'), path.join(target, 'locales'));
const icons = copyTree(path.join(root, 'icons'), path.join(target, 'icons'));
// The gRPC service definition, read at run time beside the compiled remote device (inside dist/src, so published).
const protoDir = path.join('src', 'engine', 'devices', 'remote');
let protos = 0;
for (const name of fs.readdirSync(path.join(root, protoDir))) {
  if (!name.endsWith('.proto')) continue;
  fs.mkdirSync(path.join(root, 'dist', protoDir), { recursive: true });
  fs.copyFileSync(path.join(root, protoDir, name), path.join(root, 'dist', protoDir, name));
  protos++;
}
if (html === 0) {
  console.error('copy-assets: no nodes/*.html found; nothing for the editor');
  process.exit(1);
}
console.log(`copy-assets: ${html} editor file(s), ${locales} locale file(s), ${icons} icon(s) -> ${path.relative(root, target)}; ${protos} .proto file(s) -> dist/${protoDir}`);
