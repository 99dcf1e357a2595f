/**
 * ncs2-device: a config node naming a pool of inference devices (the CPU, simulated sticks, USB
 * sticks; see lib/pool.ts) and how each is split, plus the queue bound and policy for the graphs
 * that run on it.
 */
import * as os from 'os';
import { getEngine } from '../src/engine';
import { DeviceLease } from './lib/device-lease';
import { DEVICE_KINDS } from './lib/settings';
import { parsePoolSettings, poolLabel } from './lib/pool';
import type { NodeAPI, NodeDef } from './lib/red';
import type { DeviceConfigNode } from './lib/config-nodes';
import { wrapError } from './lib/wrap-error';
import { serveEditorScript } from './lib/editor-script';

type DeviceNodeDef = NodeDef & Record<string, unknown>;

export = function register(RED: NodeAPI): void {
  serveEditorScript(RED);
  /** The deployed pools by config node id, for the admin endpoint's member list. */
  const pools = new Map<string, DeviceLease>();

  function Ncs2DeviceNode(this: DeviceConfigNode, def: DeviceNodeDef): void {
    RED.nodes.createNode(this, def);
    try {
      const settings = parsePoolSettings(def);
      // The node id keeps the device ids unique per config node and stable across redeploys.
      this.lease = new DeviceLease(getEngine, this.id, settings, def.name || poolLabel(settings), (m) => this.warn(m));
      pools.set(this.id, this.lease);
    } catch (err) {
      this.configError = wrapError(`device config ${def.name || this.id} is invalid: ${(err as Error).message}`, err);
      this.error(this.configError.message);
    }
    this.on('close', (removed, done) => {
      if (pools.get(this.id) === this.lease) pools.delete(this.id);
      (this.lease?.close(removed) ?? Promise.resolve()).then(done, (err: Error) => {
        this.warn(`releasing the device failed: ${err.message}`);
        done();
      });
    });
  }
  RED.nodes.registerType('ncs2-device', Ncs2DeviceNode);

  // The editor lists device kinds this host offers, the devices the engine has open, and each pool's members.
  RED.httpAdmin.get('/ncs2/devices', RED.auth.needsPermission('ncs2-device.read'), (_req, res) => {
    const cpus = os.cpus();
    const kinds: Array<{ kind: string; available: boolean; simulated?: boolean; description: string; cores?: number }> = DEVICE_KINDS.map((kind) =>
      kind === 'sim-ncs2'
        ? { kind, available: true, simulated: true, description: 'simulated Intel NCS2 (Myriad X): published timing, outputs computed on this CPU' }
        : { kind, available: true, description: cpus[0]?.model ?? 'CPU', cores: os.availableParallelism() },
    );
    // Real sticks are listed by the USB registry but no runtime drives them in this release.
    kinds.push({ kind: 'usb', available: false, description: 'Intel NCS2 sticks on USB: found and listed, not scheduled (no NCS2 runtime installed)' });
    const devices = getEngine()
      .listDevices()
      .map((d) => ({ id: d.id, kind: d.kind, name: d.info.name, simulated: d.info.simulated, maxInFlight: d.maxInFlight, parallelism: d.parallelism, info: d.info }));
    const members = [...pools.entries()].map(([config, lease]) => ({ config, label: lease.label, members: lease.members() }));
    res.json({ kinds, devices, pools: members });
  });
};
