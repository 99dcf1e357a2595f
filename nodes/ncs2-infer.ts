/**
 * ncs2-infer: runs msg.payload (an image, a tensor or an array of them) through the graph of its
 * ncs2-graph config node and replaces msg.payload with the result.
 */
import { InferController } from './lib/infer-controller';
import { trackInferNode } from './lib/infer-counters';
import { parseInferSettings, type InferSettings } from './lib/settings';
import type { NodeAPI, NodeDef, RedNode } from './lib/red';
import type { GraphConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type InferNodeDef = NodeDef & Record<string, unknown> & { graph?: string; split?: boolean | string };

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  function Ncs2InferNode(this: RedNode, def: InferNodeDef): void {
    RED.nodes.createNode(this, def);
    const graphNode = def.graph ? (RED.nodes.getNode(def.graph) as GraphConfigNode | null) : null;
    let settings: InferSettings | Error;
    try {
      settings = parseInferSettings(def);
    } catch (err) {
      settings = wrapError(`ncs2-infer ${def.name || def.id} is invalid: ${(err as Error).message}`, err);
    }
    const graph =
      settings instanceof Error ? settings : graphNode ? (graphNode.lease ?? graphNode.configError!) : new Error('no ncs2-graph config node is selected; open the node and choose a graph');
    const controller = new InferController({
      graph,
      backpressure: settings instanceof Error ? undefined : settings.backpressure,
      extras: settings instanceof Error ? undefined : settings.extras,
      // A batch message from ncs2-batch comes out as one message per item, each with its own properties.
      split: def.split === true || def.split === 'true',
      // node.error(err, msg) is what done(err) does for the input message: Catch nodes get the item's own message.
      itemError: (err, msg) => this.error(err, msg),
      status: (status) => this.status(status),
      warn: (message) => this.warn(message),
      words: {
        loading: RED._('ncs2-infer.status.loading'),
        ready: RED._('ncs2-infer.status.ready'),
        idle: RED._('ncs2-infer.status.idle'),
        failed: RED._('ncs2-infer.status.failed'),
        dropped: RED._('ncs2-infer.status.dropped'),
      },
    });
    const untrack = trackInferNode(def.id, { label: def.name || def.id, graphId: () => controller.graphId, counts: () => controller.messageCounts() });
    this.on('input', (msg, send, done) => controller.onInput(msg, send, done));
    this.on('close', (removed, done) => {
      untrack();
      controller.close(removed).then(done, (err: Error) => {
        this.warn(`closing failed: ${err.message}`);
        done();
      });
    });
    controller.start();
  }
  RED.nodes.registerType('ncs2-infer', Ncs2InferNode);
};
