/**
 * Thermal model of a simulated stick. Intel publishes neither the stick's thermal behaviour nor
 * its guard temperatures (ncs2-facts.md: the firmware throttles at a lower and an upper guard,
 * with short and long pauses), so every default here is an assumption, stated and overridable:
 *
 * - first order: dT/dt = (T_ss - T) / tau with T_ss = ambient + rise x duty, where duty is the
 *   share of the executors' time spent computing (pauses cool the stick);
 * - defaults: ambient 30 C, rise 45 C at full duty (so a stick under sustained full load settles
 *   near 75 C and throttles), tau 60 s;
 * - throttle level 1 at 70 C, level 2 at 80 C, each released 2 C below its guard;
 * - level 1 pauses 25% of each inference's compute time after it, level 2 100%.
 */
export interface ThermalParams {
  ambientC: number;
  riseAtFullDutyC: number;
  timeConstantMs: number;
  guard1C: number;
  guard2C: number;
  hysteresisC: number;
  /** Pause after each inference, as a share of its compute time, at levels 1 and 2. */
  pause1: number;
  pause2: number;
  /** false: temperature stays at ambient and the stick never throttles (the planner's cool run). */
  enabled: boolean;
}

export const DEFAULT_THERMAL: Readonly<ThermalParams> = Object.freeze({
  ambientC: 30,
  riseAtFullDutyC: 45,
  timeConstantMs: 60_000,
  guard1C: 70,
  guard2C: 80,
  hysteresisC: 2,
  pause1: 0.25,
  pause2: 1.0,
  enabled: true,
});

export class ThermalModel {
  readonly params: ThermalParams;
  private temp: number;
  private levelNow = 0;
  private lastMs: number | undefined;

  constructor(params: Partial<ThermalParams> = {}) {
    this.params = { ...DEFAULT_THERMAL, ...params };
    this.temp = this.params.ambientC;
  }

  get temperatureC(): number {
    return this.temp;
  }

  get level(): number {
    return this.levelNow;
  }

  /** Moves the model to `nowMs`, the executors having been busy `duty` (0..1) of the time since the last call. */
  advance(nowMs: number, duty: number): void {
    if (this.lastMs === undefined || !this.params.enabled) {
      this.lastMs = nowMs;
      return;
    }
    const dt = nowMs - this.lastMs;
    if (dt <= 0) return;
    this.lastMs = nowMs;
    const { ambientC, riseAtFullDutyC, timeConstantMs } = this.params;
    const steady = ambientC + riseAtFullDutyC * Math.min(1, Math.max(0, duty));
    this.temp = steady + (this.temp - steady) * Math.exp(-dt / timeConstantMs);
    this.updateLevel();
  }

  /** Sets the temperature (tests, or a stick that starts warm); the throttle level follows. */
  force(temperatureC: number, nowMs?: number): void {
    this.temp = temperatureC;
    if (nowMs !== undefined) this.lastMs = nowMs;
    this.updateLevel();
  }

  /** Pause after an inference of `computeMs` at the current level. */
  pauseMs(computeMs: number): number {
    if (this.levelNow === 2) return computeMs * this.params.pause2;
    if (this.levelNow === 1) return computeMs * this.params.pause1;
    return 0;
  }

  private updateLevel(): void {
    const { guard1C, guard2C, hysteresisC } = this.params;
    const t = this.temp;
    const was = this.levelNow;
    if (t >= guard2C || (was === 2 && t > guard2C - hysteresisC)) this.levelNow = 2;
    else if (t >= guard1C || (was >= 1 && t > guard1C - hysteresisC)) this.levelNow = 1;
    else this.levelNow = 0;
  }
}
