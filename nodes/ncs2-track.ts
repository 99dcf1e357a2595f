/**
 * ncs2-track: turns per-frame detections (ncs2-infer, detection preset) into tracked objects and
 * zone and line events: entered, left, dwell, crossed, count. Output 1: one message per event;
 * output 2: per frame, the confirmed tracks and zone counts.
 */
import { TrackController } from './lib/camera-track';
import { parseTrackSettings } from './lib/camera-settings';
import type { NodeAPI, NodeDef, NodeMessage, RedNode } from './lib/red';

type TrackNodeDef = NodeDef & Record<string, unknown>;
type MultiSend = (msgs: Array<NodeMessage | NodeMessage[] | null>) => void;

export = function register(RED: NodeAPI): void {
  function Ncs2TrackNode(this: RedNode, def: TrackNodeDef): void {
    RED.nodes.createNode(this, def);
    let controller: TrackController | undefined;
    let configError: Error | undefined;
    try {
      controller = new TrackController(parseTrackSettings(def));
    } catch (err) {
      configError = new Error(`ncs2-track ${def.name || def.id} is invalid: ${(err as Error).message}`);
      this.error(configError.message);
      this.status({ fill: 'red', shape: 'ring', text: 'invalid settings' });
    }
    let events = 0;
    let shown = '';
    // frames are tracked in arrival order even though cropping is asynchronous
    let queue: Promise<void> = Promise.resolve();
    this.on('input', (msg, send, done) => {
      if (!controller) {
        done(configError);
        return;
      }
      const track = controller;
      queue = queue.then(async () => {
        try {
          const out = await track.onMessage(msg);
          events += out.events.length;
          // an array on the first output sends each event as its own message
          (send as MultiSend)([out.events.length ? out.events : null, out.tracks]);
          const text = `${(out.tracks.payload as { tracks: unknown[] }).tracks.length} tracked · ${events} events`;
          if (text !== shown) this.status({ fill: 'green', shape: 'dot', text: (shown = text) });
          done();
        } catch (err) {
          done(err as Error);
        }
      });
    });
  }
  RED.nodes.registerType('ncs2-track', Ncs2TrackNode);
};
