/**
 * ncs2-thermal-guard: sets the engine's thermal limits for every device (alert only, shed load,
 * or pause at the critical temperature), reports state changes and periodic readings, and shows
 * the hottest device in its status.
 */
import { getEngine } from '../src/engine';
import { ThermalGuard } from './lib/thermal-guard';
import { parseThermalSettings } from './lib/settings';
import type { NodeAPI, NodeDef, RedNode } from './lib/red';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type ThermalNodeDef = NodeDef & Record<string, unknown>;

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  function Ncs2ThermalGuardNode(this: RedNode & { send(msg: unknown): void }, def: ThermalNodeDef): void {
    RED.nodes.createNode(this, def);
    let guard: ThermalGuard | undefined;
    let configError: Error | undefined;
    try {
      guard = new ThermalGuard({
        engine: getEngine(),
        settings: parseThermalSettings(def),
        sendState: (msg) => this.send([msg, null]),
        // One send with an array on output 2: Node-RED sends each element as its own message.
        sendReadings: (messages) => this.send([null, messages]),
        status: (status) => this.status(status),
      });
    } catch (err) {
      configError = wrapError(`ncs2-thermal-guard ${def.name || this.id} is invalid: ${(err as Error).message}`, err);
      this.error(configError.message);
      this.status({ fill: 'red', shape: 'ring', text: 'invalid settings' });
    }
    // Any message asks for readings now (an inject node, a dashboard button).
    this.on('input', (_msg, _send, done) => {
      if (!guard) {
        done(configError);
        return;
      }
      guard.sendReadings();
      done();
    });
    this.on('close', (_removed, done) => {
      guard?.close();
      done();
    });
    guard?.start();
  }
  RED.nodes.registerType('ncs2-thermal-guard', Ncs2ThermalGuardNode);
};
