/**
 * Thermal-aware scheduling: from a device's temperature, its throttle level and its own service
 * time, decide how much work it should get. States change with hysteresis so a device near a
 * limit does not flap between full share and none.
 */
export interface ThermalLimits {
  /** Above this the device's share is lowered (degrees C). */
  targetC: number;
  /** At this the device gets no new work until it cools by `hysteresisC`. */
  criticalC: number;
  hysteresisC: number;
  /** Service time this many times its best at the same work counts as throttling (the stick's firmware throttles silently). */
  latencyRise: number;
  /** Share a hot device keeps (its expected cost is divided by this). */
  hotShare: number;
}

export const DEFAULT_THERMAL_LIMITS: ThermalLimits = { targetC: 70, criticalC: 85, hysteresisC: 5, latencyRise: 1.5, hotShare: 0.25 };

export type ThermalState = 'normal' | 'hot' | 'critical';

export interface ThermalReading {
  temperatureC?: number;
  throttleLevel?: number;
  /** Current service time over the best seen for the same graph (1 = as fast as ever). */
  slowdown?: number;
}

export interface ThermalDecision {
  state: ThermalState;
  /** What pushed the device into its state, for statistics and the thermal-guard node. */
  reason: string;
}

export class ThermalPolicy {
  private current: ThermalDecision = { state: 'normal', reason: 'within limits' };

  constructor(readonly limits: ThermalLimits = DEFAULT_THERMAL_LIMITS) {}

  get state(): ThermalState {
    return this.current.state;
  }

  get decision(): ThermalDecision {
    return this.current;
  }

  /** Share of work relative to a cool device: 1, hotShare, or 0 (paused). */
  get share(): number {
    return this.current.state === 'normal' ? 1 : this.current.state === 'hot' ? this.limits.hotShare : 0;
  }

  update(r: ThermalReading): ThermalDecision {
    const { targetC, criticalC, hysteresisC, latencyRise } = this.limits;
    const t = r.temperatureC;
    const was = this.current.state;
    if (t !== undefined && (t >= criticalC || (was === 'critical' && t > criticalC - hysteresisC))) {
      this.current = { state: 'critical', reason: `${t.toFixed(1)} C at or above the critical ${criticalC} C (resumes at ${criticalC - hysteresisC} C)` };
      return this.current;
    }
    const hotByTemp = t !== undefined && (t >= targetC || (was !== 'normal' && t > targetC - hysteresisC));
    const throttled = (r.throttleLevel ?? 0) > 0;
    const slowed = (r.slowdown ?? 1) >= latencyRise;
    if (hotByTemp || throttled || slowed) {
      const reason = throttled
        ? `device reports throttle level ${r.throttleLevel}`
        : slowed
          ? `service time ${r.slowdown!.toFixed(2)}x its best: throttling suspected`
          : `${t!.toFixed(1)} C above the target ${targetC} C (full share again at ${targetC - hysteresisC} C)`;
      this.current = { state: 'hot', reason };
      return this.current;
    }
    this.current = { state: 'normal', reason: 'within limits' };
    return this.current;
  }
}
