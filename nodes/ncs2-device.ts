/**
 * ncs2-device: a config node naming an inference device (the CPU today) and how it is split,
 * plus the queue bound and policy for the graphs that run on it.
 */
import * as os from 'os';
import { getEngine } from '../src/engine';
import { DeviceLease } from './lib/device-lease';
import { DEVICE_KINDS, parseDeviceSettings } from './lib/settings';
import type { NodeAPI, NodeDef } from './lib/red';
import type { DeviceConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type DeviceNodeDef = NodeDef & Record<string, unknown>;

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  function Ncs2DeviceNode(this: DeviceConfigNode, def: DeviceNodeDef): void {
    RED.nodes.createNode(this, def);
    try {
      const settings = parseDeviceSettings(def);
      // The node id keeps the device id unique per config node and stable across redeploys.
      this.lease = new DeviceLease(getEngine, `${settings.kind}-${this.id}`, settings, def.name || settings.kind, (m) => this.warn(m));
    } catch (err) {
      this.configError = wrapError(`device config ${def.name || this.id} is invalid: ${(err as Error).message}`, err);
      this.error(this.configError.message);
    }
    this.on('close', (removed, done) => {
      (this.lease?.close(removed) ?? Promise.resolve()).then(done, (err: Error) => {
        this.warn(`releasing the device failed: ${err.message}`);
        done();
      });
    });
  }
  RED.nodes.registerType('ncs2-device', Ncs2DeviceNode);

  // The editor lists device kinds this host offers and the devices the engine has open.
  RED.httpAdmin.get('/ncs2/devices', RED.auth.needsPermission('ncs2-device.read'), (_req, res) => {
    const cpus = os.cpus();
    const kinds = DEVICE_KINDS.map((kind) =>
      kind === 'sim-ncs2'
        ? { kind, available: true, simulated: true, description: 'simulated Intel NCS2 (Myriad X): published timing, outputs computed on this CPU' }
        : { kind, available: true, description: cpus[0]?.model ?? 'CPU', cores: os.availableParallelism() },
    );
    const devices = getEngine()
      .listDevices()
      .map((d) => ({ id: d.id, kind: d.kind, name: d.info.name, simulated: d.info.simulated, maxInFlight: d.maxInFlight, parallelism: d.parallelism, info: d.info }));
    res.json({ kinds, devices });
  });
};
