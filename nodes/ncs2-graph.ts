/**
 * ncs2-graph: a config node for one model on one device, with its input preprocessing and
 * output preset. Flow nodes share the loaded graph through its lease.
 */
import * as path from 'path';
import { getEngine, readModelInfo, ConfigError, resolveImageSpec } from '../src/engine';
import { GraphLease } from './lib/graph-lease';
import { DEFAULT_MODEL, exportModelsDir, resolveConfigPath } from './lib/paths';
import { parseGraphSettings } from './lib/settings';
import { EditorReadsBusyError, ROOTS_SETTING, checkGraphPaths, filePolicy, readModelForEditor, type FilePolicy } from './lib/model-paths';
import type { NodeAPI, NodeDef } from './lib/red';
import type { DeviceConfigNode, GraphConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type GraphNodeDef = NodeDef & Record<string, unknown> & { device?: string; model?: string };

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  exportModelsDir();

  function Ncs2GraphNode(this: GraphConfigNode, def: GraphNodeDef): void {
    RED.nodes.createNode(this, def);
    const deviceNode = def.device ? (RED.nodes.getNode(def.device) as DeviceConfigNode | null) : null;
    const device = deviceNode ? (deviceNode.lease ?? deviceNode.configError!) : new ConfigError(`graph config ${def.name || this.id} has no ncs2-device selected; open it and choose a device`);
    try {
      const settings = parseGraphSettings(def, RED.settings.userDir);
      checkGraphPaths(settings, filePolicy(RED.settings));
      const name = def.name || path.basename(settings.modelPath);
      this.lease = new GraphLease(getEngine, device, settings, name, { info: (m) => this.log(m), warn: (m) => this.warn(m), error: (m) => this.error(m) });
    } catch (err) {
      this.configError = wrapError(`graph config ${def.name || this.id} is invalid: ${(err as Error).message}`, err);
      this.error(this.configError.message);
    }
    this.on('close', (removed, done) => {
      (this.lease?.close(removed) ?? Promise.resolve()).then(done, (err: Error) => {
        this.warn(`releasing the graph failed: ${err.message}`);
        done();
      });
    });
  }
  RED.nodes.registerType('ncs2-graph', Ncs2GraphNode);

  // Inputs and outputs of a model file, read from its bytes (no session), for the editor dialog.
  // Read-only users may call it, so it reads only what a flow could select (model-paths.ts), and
  // a refused path answers exactly like a missing one: no size, no contents, no existence.
  RED.httpAdmin.get('/ncs2/model-info', RED.auth.needsPermission('ncs2-graph.read'), (req, res) => {
    const requested = typeof req.query.model === 'string' ? req.query.model.trim() : '';
    const unreadable = () => res.status(404).json({ error: `no ONNX model ${JSON.stringify(requested.slice(0, 200))} that the editor may read: give a .onnx file in the Node-RED user directory, the package's models or a folder listed in ${ROOTS_SETTING} (settings.js)` });
    let policy: FilePolicy;
    try {
      policy = filePolicy(RED.settings);
    } catch (err) {
      res.status(500).json({ error: (err as Error).message });
      return;
    }
    const modelPath = requested ? resolveConfigPath(requested, RED.settings.userDir) : DEFAULT_MODEL;
    readModelForEditor(modelPath, policy)
      .then(({ bytes }) => {
        let info: ReturnType<typeof readModelInfo>;
        try {
          info = readModelInfo(bytes);
        } catch {
          // The parser's reason can quote offsets and lengths; the editor needs only this.
          res.status(422).json({ path: modelPath, error: `${modelPath} is not a valid ONNX model` });
          return;
        }
        let image: unknown;
        try {
          image = info.inputs[0] ? resolveImageSpec(info.inputs[0]) : { error: 'the model declares no inputs' };
        } catch (err) {
          image = { error: (err as Error).message };
        }
        res.json({ path: modelPath, inputs: info.inputs, outputs: info.outputs, opsetVersion: info.opsetVersion, precision: info.precision, producer: info.producer, image });
      })
      .catch((err: Error) => (err instanceof EditorReadsBusyError ? res.status(503).json({ error: err.message }) : unreadable()));
  });

  // The state of a deployed graph config node: loading, failed (why) or ready (its signature).
  RED.httpAdmin.get('/ncs2/graphs/:id', RED.auth.needsPermission('ncs2-graph.read'), (req, res) => {
    const node = RED.nodes.getNode(req.params.id) as GraphConfigNode | null;
    if (!node || node.type !== 'ncs2-graph') {
      res.status(404).json({ error: `no deployed ncs2-graph with id ${req.params.id}; deploy it first` });
      return;
    }
    if (!node.lease) {
      res.json({ state: 'failed', error: node.configError?.message });
      return;
    }
    const state = node.lease.state;
    if (state.state === 'ready') {
      const { setup, deviceIds, notRunning } = state.graph;
      const image = setup.image instanceof Error ? { error: setup.image.message } : setup.image;
      res.json({ state: 'ready', name: setup.handle.name, device: deviceIds.join(', '), devices: deviceIds, notRunning, inputs: setup.handle.info.inputs, outputs: setup.handle.info.outputs, image });
    } else {
      res.json({ state: state.state, error: state.state === 'failed' ? state.error.message : undefined });
    }
  });
};
