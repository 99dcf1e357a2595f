import type { InferenceEngine } from '../../src/engine/pipeline/engine';
import type { ThermalLimits, ThermalState } from '../../src/engine/pipeline/thermal-policy';
import type { NodeMessage, NodeStatus } from './red';

export type ThermalAction = 'alert' | 'shed' | 'pause';

export interface ThermalGuardSettings {
  targetC: number;
  criticalC: number;
  hysteresisC: number;
  action: ThermalAction;
  /** Period of the readings output (ms); 0 = readings only when a message arrives. */
  intervalMs: number;
}

/** The engine's 'thermal' event. */
export interface ThermalEvent {
  deviceId: string;
  temperatureC?: number;
  state: ThermalState;
  previous: ThermalState;
  reason: string;
}

export interface ThermalReadingPayload {
  deviceId: string;
  temperatureC: number | null;
  state: ThermalState;
  simulated: boolean;
}

export interface ThermalGuardOptions {
  engine: InferenceEngine;
  settings: ThermalGuardSettings;
  /** Output 1: state changes. */
  sendState(msg: NodeMessage): void;
  /** Output 2: readings, one message per device. */
  sendReadings(messages: NodeMessage[]): void;
  status(status: NodeStatus): void;
}

/**
 * How each action maps onto the engine's thermal policy (which the scheduler follows):
 * - alert: states are still computed and reported (normal/hot by the target), but a hot device
 *   keeps its full share and no temperature is critical, so scheduling never changes;
 * - shed: a device above the target keeps a quarter of its share (the engine's hotShare), never paused;
 * - pause: as shed, and a device at the critical temperature gets no new work until it has
 *   cooled by the hysteresis.
 */
export function limitsFor(s: ThermalGuardSettings): Partial<ThermalLimits> {
  const base = { targetC: s.targetC, hysteresisC: s.hysteresisC };
  if (s.action === 'alert') return { ...base, criticalC: Infinity, hotShare: 1 };
  if (s.action === 'shed') return { ...base, criticalC: Infinity };
  return { ...base, criticalC: s.criticalC };
}

/** Device ids embed a config node id (cpu-d1a2b3c4e5f60311); the status line has room for about 20 characters. */
function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 12)}…` : id;
}

const FILL: Record<ThermalState, NodeStatus['fill']> = { normal: 'green', hot: 'yellow', critical: 'red' };

/**
 * What an ncs2-thermal-guard node does, without Node-RED: applies its limits to every engine
 * device (including devices added later), forwards the engine's state changes, sends readings on
 * a timer, and shows the hottest device. close() removes its listeners and timer and gives the
 * devices back the engine's default limits.
 */
export class ThermalGuard {
  private timer: NodeJS.Timeout | undefined;
  private readonly applied = new Set<string>();
  private readonly onThermal = (event: ThermalEvent) => {
    this.options.sendState({
      topic: 'thermal',
      payload: { deviceId: event.deviceId, state: event.state, previous: event.previous, temperatureC: event.temperatureC ?? null, reason: event.reason },
    });
    this.render();
  };
  private readonly onDevices = () => {
    this.applyLimits();
    this.render();
  };

  constructor(private readonly options: ThermalGuardOptions) {}

  start(): void {
    const { engine, settings } = this.options;
    this.applyLimits();
    engine.on('thermal', this.onThermal);
    engine.on('devices', this.onDevices);
    if (settings.intervalMs > 0) {
      this.timer = setInterval(() => this.sendReadings(), settings.intervalMs);
      this.timer.unref();
    }
    this.render();
  }

  /** Sets this node's limits on devices that do not have them yet (setting them again would reset a device's state). */
  private applyLimits(): void {
    const limits = limitsFor(this.options.settings);
    const present = new Set<string>();
    for (const device of this.options.engine.listDevices()) {
      present.add(device.id);
      if (this.applied.has(device.id)) continue;
      this.options.engine.setThermalLimits(device.id, limits);
      this.applied.add(device.id);
    }
    // A device that left and comes back under the same id gets the limits again.
    for (const id of this.applied) if (!present.has(id)) this.applied.delete(id);
  }

  readings(): ThermalReadingPayload[] {
    const { engine } = this.options;
    return engine.listDevices().map((device) => {
      const t = device.telemetry();
      return {
        deviceId: device.id,
        temperatureC: typeof t.temperatureC === 'number' && Number.isFinite(t.temperatureC) ? t.temperatureC : null,
        state: engine.thermalState(device.id)?.state ?? 'normal',
        simulated: t.simulated || device.info.simulated,
      };
    });
  }

  /** One message per device on the readings output; also what an incoming message triggers. */
  sendReadings(): void {
    const readings = this.readings();
    this.show(readings);
    if (readings.length > 0) this.options.sendReadings(readings.map((payload) => ({ topic: `thermal/${payload.deviceId}`, payload })));
  }

  private render(): void {
    this.show(this.readings());
  }

  private show(readings: ThermalReadingPayload[]): void {
    if (readings.length === 0) {
      this.options.status({ fill: 'grey', shape: 'ring', text: 'no devices' });
      return;
    }
    const known = readings.filter((r) => r.temperatureC !== null);
    if (known.length === 0) {
      this.options.status({ fill: 'grey', shape: 'ring', text: 'no sensor' });
      return;
    }
    const hottest = known.reduce((a, b) => (b.temperatureC! > a.temperatureC! ? b : a));
    this.options.status({ fill: FILL[hottest.state], shape: hottest.state === 'normal' ? 'ring' : 'dot', text: `${hottest.temperatureC!.toFixed(0)} C ${shortId(hottest.deviceId)}` });
  }

  close(): void {
    const { engine } = this.options;
    clearInterval(this.timer);
    this.timer = undefined;
    engine.off('thermal', this.onThermal);
    engine.off('devices', this.onDevices);
    // Leaving the limits behind would keep shedding or pausing after the guard is gone.
    for (const device of engine.listDevices()) if (this.applied.has(device.id)) engine.setThermalLimits(device.id, {});
    this.applied.clear();
  }
}
