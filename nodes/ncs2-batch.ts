/**
 * ncs2-batch: groups messages into one batch message (by count, by time, or adaptively to the
 * graph's current batch cap) for ncs2-infer, which can run it as one batch or split it back.
 */
import { BatchCollector, type BatchMode } from './lib/batch-collector';
import { parseBatchSettings } from './lib/settings';
import type { NodeAPI, NodeDef, RedNode } from './lib/red';
import type { GraphConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type BatchNodeDef = NodeDef & Record<string, unknown> & { graph?: string };

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  function Ncs2BatchNode(this: RedNode, def: BatchNodeDef): void {
    RED.nodes.createNode(this, def);
    let collector: BatchCollector | undefined;
    let configError: Error | undefined;
    try {
      const settings = parseBatchSettings(def);
      const graphNode = def.graph ? (RED.nodes.getNode(def.graph) as GraphConfigNode | null) : null;
      collector = new BatchCollector({
        ...settings,
        status: (status) => this.status(status),
        adaptiveCap: () => adaptiveCap(settings.mode, graphNode),
      });
    } catch (err) {
      configError = wrapError(`ncs2-batch ${def.name || this.id} is invalid: ${(err as Error).message}`, err);
      this.error(configError.message);
      this.status({ fill: 'red', shape: 'ring', text: 'invalid settings' });
    }
    this.on('input', (msg, send, done) => {
      if (collector) collector.onInput(msg, send, done);
      else done(configError);
    });
    this.on('close', (_removed, done) => {
      collector?.close();
      done();
    });
    collector?.start();
  }
  RED.nodes.registerType('ncs2-batch', Ncs2BatchNode);
};

/**
 * The batch cap the engine's adaptive controller currently uses for the graph; undefined while
 * the graph is not loaded or has batching off (the count applies). The batch node only reads the
 * graph: it does not load it (the infer node using it does).
 */
function adaptiveCap(mode: BatchMode, graphNode: GraphConfigNode | null): number | undefined {
  return mode === 'adaptive' ? graphNode?.lease?.batchCap() : undefined;
}
