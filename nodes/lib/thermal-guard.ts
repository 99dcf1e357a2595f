import { DEFAULT_THERMAL_LIMITS } from '../../src/engine';
import type { InferenceEngine, ThermalLimits, ThermalState } from '../../src/engine';
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
/** The strictest of several guards' limits: the lowest temperatures, the widest hysteresis, the smallest share. */
export function strictestLimits(all: Array<Partial<ThermalLimits>>): Partial<ThermalLimits> {
  const pick = (field: keyof ThermalLimits, choose: (...v: number[]) => number) => {
    const values = all.map((l) => l[field] ?? DEFAULT_THERMAL_LIMITS[field]);
    return choose(...values);
  };
  return { targetC: pick('targetC', Math.min), criticalC: pick('criticalC', Math.min), hysteresisC: pick('hysteresisC', Math.max), hotShare: pick('hotShare', Math.min) };
}

/**
 * The guards deployed against one engine. Several guards (on several tabs, say) combine to the
 * strictest limits instead of the last deployed one silently winning; limits are set on a device
 * only when they change, since setting them resets the device's thermal state.
 */
class GuardSet {
  readonly guards = new Set<ThermalGuard>();
  private readonly applied = new Map<string, string>();

  constructor(private readonly engine: InferenceEngine) {}

  apply(): void {
    const present = new Set<string>();
    const limits = this.guards.size > 0 ? strictestLimits([...this.guards].map((g) => g.limits)) : undefined;
    const key = JSON.stringify(limits ?? null);
    for (const device of this.engine.listDevices()) {
      present.add(device.id);
      if (this.applied.get(device.id) === key) continue;
      // No guard left: the engine's defaults, or shedding and pausing would outlive the guards.
      this.engine.setThermalLimits(device.id, limits ?? {});
      if (limits) this.applied.set(device.id, key);
      else this.applied.delete(device.id);
    }
    // A device that left and comes back under the same id gets the limits again.
    for (const id of this.applied.keys()) if (!present.has(id)) this.applied.delete(id);
  }
}

const guardSets = new WeakMap<InferenceEngine, GuardSet>();

function guardSetOf(engine: InferenceEngine): GuardSet {
  let set = guardSets.get(engine);
  if (!set) guardSets.set(engine, (set = new GuardSet(engine)));
  return set;
}

export class ThermalGuard {
  private timer: NodeJS.Timeout | undefined;
  readonly limits: Partial<ThermalLimits>;
  private readonly guardSet: GuardSet;
  private readonly onThermal = (event: ThermalEvent) => {
    this.options.sendState({
      topic: 'thermal',
      payload: { deviceId: event.deviceId, state: event.state, previous: event.previous, temperatureC: event.temperatureC ?? null, reason: event.reason },
    });
    this.render();
  };
  private readonly onDevices = () => {
    this.guardSet.apply();
    this.render();
  };

  constructor(private readonly options: ThermalGuardOptions) {
    this.limits = limitsFor(options.settings);
    this.guardSet = guardSetOf(options.engine);
  }

  start(): void {
    const { engine, settings } = this.options;
    this.guardSet.guards.add(this);
    this.guardSet.apply();
    engine.on('thermal', this.onThermal);
    engine.on('devices', this.onDevices);
    if (settings.intervalMs > 0) {
      this.timer = setInterval(() => this.sendReadings(), settings.intervalMs);
      this.timer.unref();
    }
    this.render();
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
    this.guardSet.guards.delete(this);
    this.guardSet.apply();
  }
}
