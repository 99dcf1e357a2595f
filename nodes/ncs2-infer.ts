/**
 * ncs2-infer: runs msg.payload (an image, a tensor or an array of them) through the graph of its
 * ncs2-graph config node and replaces msg.payload with the result.
 */
import { InferController, type InferControllerOptions } from './lib/infer-controller';
import { trackInferNode } from './lib/infer-counters';
import { parseInferSettings, type InferSettings } from './lib/settings';
import type { NodeAPI, NodeDef, RedNode } from './lib/red';
import type { GraphConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type InferNodeDef = NodeDef & Record<string, unknown> & { graph?: string; split?: boolean | string };

type HandedOver = Parameters<NonNullable<InferControllerOptions['handOver']>>[0];

/**
 * What a restarted ncs2-infer node hands to its next instance, by node id. Node-RED stops every
 * node of a redeploy before it starts the new ones, so results that finish while the old instance
 * closes have no downstream node to go to yet. A message can still reach the old instance after
 * the new one exists (an upstream node finishing late): the mailbox then passes it straight on.
 */
interface Mailbox {
  waiting: HandedOver[];
  /** The next instance, once created; it takes messages once the deploy has started every node. */
  receiver?: RedNode;
  ready: boolean;
}
const mailboxes = new Map<string, Mailbox>();

function deliver(box: Mailbox): void {
  if (!box.receiver || !box.ready) return;
  const node = box.receiver;
  for (const m of box.waiting.splice(0)) {
    if ('result' in m) node.send(m.result);
    else node.receive(m.input);
  }
}

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  discardOnShutdown(RED);
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
      handOver: (message) => {
        let box = mailboxes.get(def.id);
        // The box this instance took over from its predecessor is done with: its own close starts a new one.
        if (!box || box.receiver === this) {
          const created: Mailbox = { waiting: [], ready: false };
          mailboxes.set(def.id, created);
          // A node stopped without coming back (its flow disabled) never takes them: say so, keep nothing.
          RED.events?.once('flows:started', () => {
            if (mailboxes.get(def.id) !== created || created.receiver) return;
            mailboxes.delete(def.id);
            RED.log.warn(`ncs2-infer ${def.name || def.id} did not start again after the deploy; ${created.waiting.length} of its messages were discarded`);
          });
          box = created;
        }
        box.waiting.push(message);
        deliver(box);
      },
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
    takeOver(RED, this, def.id);
  }
  RED.nodes.registerType('ncs2-infer', Ncs2InferNode);
};

const watchedRuntimes = new WeakSet<object>();

/**
 * Stopping the flows without a deploy (shutdown, a test helper's unload) starts no next instance:
 * what was handed over goes, so that a later, unrelated flow with the same node id does not send it.
 */
function discardOnShutdown(RED: NodeAPI): void {
  const events = RED.events;
  if (!events || watchedRuntimes.has(events)) return;
  watchedRuntimes.add(events);
  events.on('runtime-event', (event: { id?: string; payload?: { state?: string; deploy?: boolean } }) => {
    if (event?.id === 'runtime-state' && event.payload?.state === 'stop' && !event.payload.deploy) mailboxes.clear();
  });
}

/**
 * The previous instance's messages, sent and run once the deploy has started every node (the
 * downstream ones included), and any it hands over later while this instance runs.
 */
function takeOver(RED: NodeAPI, node: RedNode, id: string): void {
  const box = mailboxes.get(id);
  if (!box) return;
  box.receiver = node;
  const start = () => {
    box.ready = true;
    deliver(box);
  };
  if (RED.events) RED.events.once('flows:started', start);
  else setImmediate(start);
  node.on('close', () => {
    if (mailboxes.get(id) === box) mailboxes.delete(id);
  });
}
