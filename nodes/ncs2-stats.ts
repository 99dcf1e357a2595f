/**
 * ncs2-stats: emits the engine's statistics on an interval and on every input message, as
 * dashboard-ready messages (see lib/stats-messages.ts), and mounts the Prometheus endpoint.
 */
import { getEngine, PrometheusExporter } from '../src/engine';
import { buildStatsMessages, poolView, type StatsFilter } from './lib/stats-messages';
import { inferNodeCounts } from './lib/infer-counters';
import type { AdminRequest, NodeAPI, NodeDef, NodeMessage, RedNode, SendFunction } from './lib/red';
import type { DeviceConfigNode, GraphConfigNode } from './lib/config-nodes';
import { serveEditorScript } from './lib/editor-script';
import { FIELD_RULES, readField } from './lib/field-rules';

type StatsNodeDef = NodeDef & { interval?: string | number; graph?: string; device?: string };

/** The express response methods the metrics endpoint needs beyond red.ts's JSON-only view. */
interface TextResponse {
  status(code: number): TextResponse;
  set(header: string, value: string): TextResponse;
  send(body: string): void;
}

/** Shortest interval: a dashboard cannot show changes faster, and each tick takes a stats snapshot. */
const MIN_INTERVAL_S = 0.25;

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  function Ncs2StatsNode(this: RedNode & { send: SendFunction }, def: StatsNodeDef): void {
    RED.nodes.createNode(this, def);
    // Blank or missing: the rule's default; 0 emits only on input.
    const interval = readField(FIELD_RULES['ncs2-stats'].interval, def.interval);
    if (interval.error) this.error(`ncs2-stats ${def.name || this.id} is invalid: ${interval.error}; it emits only on input`);
    const intervalS = (interval.value as number | undefined) ?? 0;
    const graphNode = def.graph ? (RED.nodes.getNode(def.graph) as GraphConfigNode | null) : null;
    const deviceNode = def.device ? (RED.nodes.getNode(def.device) as DeviceConfigNode | null) : null;

    // The graph id exists only once the graph config has loaded its model, so it is looked up per emission.
    const filter = (msg?: NodeMessage): StatsFilter | Error => {
      const f: StatsFilter = {};
      if (typeof msg?.device === 'string') f.deviceId = msg.device;
      else if (def.device) {
        if (!deviceNode?.lease) return new Error('the selected ncs2-device is not deployed or its configuration is invalid');
        f.deviceIds = deviceNode.lease.devices.map((d) => d.spec.id);
      }
      if (typeof msg?.graph === 'string') f.graphId = msg.graph;
      else if (def.graph) {
        const graphId = graphNode?.lease?.graphId;
        if (graphId === undefined) return new Error(`the selected ncs2-graph is not loaded (${graphNode?.lease?.state.state ?? 'not deployed'})`);
        f.graphId = graphId;
      }
      return f;
    };

    const emit = (send: SendFunction, msg?: NodeMessage): Error | undefined => {
      const f = filter(msg);
      if (f instanceof Error) {
        this.status({ fill: 'yellow', shape: 'ring', text: RED._('ncs2-stats.status.waiting') });
        return f;
      }
      const graphState = graphNode?.lease?.state;
      const pool = deviceNode?.lease ?? graphNode?.lease?.pool;
      const view = pool && poolView(pool, graphState?.state === 'ready' ? graphState.graph : undefined);
      const { metrics, rows } = buildStatsMessages(getEngine().getStats(), f, inferNodeCounts(), view);
      this.status({ fill: 'green', shape: 'dot', text: RED._('ncs2-stats.status.devices', { count: rows.length }) });
      // Output 1 gets an array: Node-RED sends its messages one by one on that output.
      (send as (m: unknown) => void)([metrics, { ...(msg ?? {}), topic: 'devices', payload: rows }]);
      return undefined;
    };

    let timer: NodeJS.Timeout | undefined;
    if (Number.isFinite(intervalS) && intervalS > 0) {
      timer = setInterval(() => {
        // A graph still loading is normal on a timer tick: the status says so, no log flood.
        emit((m) => this.send(m));
      }, Math.max(MIN_INTERVAL_S, intervalS) * 1000);
    }

    this.on('input', (msg, send, done) => {
      try {
        const err = emit(send, msg);
        done(err);
      } catch (err) {
        done(err as Error);
      }
    });
    this.on('close', (_removed, done) => {
      clearInterval(timer);
      done();
    });
  }
  RED.nodes.registerType('ncs2-stats', Ncs2StatsNode);

  // Prometheus scrape target on the admin API (Node-RED's adminAuth protects it like the editor).
  const exporter = new PrometheusExporter(() => getEngine());
  RED.httpAdmin.get('/ncs2/metrics', RED.auth.needsPermission('ncs2-stats.read'), (_req: AdminRequest, res) => {
    const text = res as unknown as TextResponse;
    exporter.metrics().then(
      (body) => text.status(200).set('Content-Type', exporter.contentType).send(body),
      (err: Error) => text.status(500).set('Content-Type', 'text/plain').send(`# metrics failed: ${err.message}\n`),
    );
  });
};
