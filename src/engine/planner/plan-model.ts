/**
 * `ncs2 plan <model>`: the capacity planner for a model file. The model is analysed once (ops,
 * depthwise share, bytes on the wire, from one probe run off the main thread), then planned for N
 * sticks and for N + 1, so the answer to "would another stick help?" is in the result.
 */
import { promises as fs } from 'fs';
import { analyzeModelOffThread, type ModelTimingProfile } from '../devices/sim-ncs2/analyze';
import { planThroughput, type Plan, type PlanOptions } from './planner';
import { ModelLoadError } from '../errors';
import { readModelInfo } from '../graph/model-info';

export interface ModelPlan {
  model: { source: string; precision: string; opsPerInference: number; depthwiseShare: number; inputBytes: number; outputBytes: number; unknownOps: string[] };
  plan: Plan;
  /** The same with one more stick. */
  withOneMoreStick: Plan;
  /** withOneMoreStick / plan throughput - 1 (0.5 = +50%). */
  oneMoreStickGain: number;
  /** Plain-language verdict for the CLI. */
  summary: string;
  /** INT8 models cannot run on a stick: planned as their FP32 original would be. */
  warnings: string[];
}

export async function planModelFile(model: string | Uint8Array, options: PlanOptions): Promise<ModelPlan> {
  const source = typeof model === 'string' ? model : `${model.byteLength}-byte model`;
  let bytes: Uint8Array;
  try {
    bytes = typeof model === 'string' ? await fs.readFile(model) : model;
  } catch (err) {
    throw new ModelLoadError(`cannot read model file ${source}: ${(err as Error).message}`);
  }
  let profile: ModelTimingProfile;
  let precision: string;
  try {
    precision = readModelInfo(bytes).precision;
    profile = await analyzeModelOffThread(bytes);
  } catch (err) {
    throw new ModelLoadError(`cannot plan ${source}: ${(err as Error).message.split('\n')[0]}`);
  }
  const warnings: string[] = [];
  if (precision === 'int8') warnings.push('this is an INT8 graph: a stick refuses it (FP16 only); the plan assumes its FP32/FP16 original with the same ops');
  if (profile.unknownOps.length > 0) warnings.push(`ops of ${profile.unknownOps.join(', ')} are not counted: the plan is optimistic`);
  const m = { opsPerInference: profile.ops, inputBytes: profile.inputBytes, outputBytes: profile.outputBytes, depthwiseShare: profile.depthwiseShare };
  const plan = planThroughput(m, options);
  const more = planThroughput(m, { ...options, sticks: options.sticks + 1, requestsInFlight: options.requestsInFlight ? Math.round((options.requestsInFlight * (options.sticks + 1)) / options.sticks) : undefined });
  const gain = more.throughputFps / plan.throughputFps - 1;
  const summary =
    `${plan.sticks} simulated stick${plan.sticks > 1 ? 's' : ''} on USB ${plan.usb}: ${plan.throughputFps.toFixed(1)} inferences/s, ` +
    `latency p50 ${plan.latencyMs.p50.toFixed(1)} ms, p99 ${plan.latencyMs.p99.toFixed(1)} ms; limited by ${plan.bottleneck}. ` +
    `One more stick: ${gain >= 0 ? '+' : ''}${(gain * 100).toFixed(0)}%` +
    (plan.sustained.throttle !== 'none' ? `. Sustained (thermal throttling, assumed limits): ${plan.sustained.throughputFps.toFixed(1)} inferences/s` : '');
  return {
    model: { source, precision, opsPerInference: profile.ops, depthwiseShare: profile.depthwiseShare, inputBytes: profile.inputBytes, outputBytes: profile.outputBytes, unknownOps: profile.unknownOps },
    plan,
    withOneMoreStick: more,
    oneMoreStickGain: gain,
    summary,
    warnings,
  };
}

export interface SimBenchVerdict {
  measuredFps: number;
  plannedFps: number;
  /** measured / planned. */
  ratio: number;
  /** Largest share of results the host computed after the simulated stick would have returned them. */
  hostLateShare: number;
  hostLimited: boolean;
  message: string;
}

/**
 * For `ncs2 bench --device sim-ncs2 --devices N`: compares the paced run with the planner's
 * prediction for the same sticks and says which side limited it. The simulated sticks need the
 * host to compute real outputs; when the host is late for more than 5% of results and the run
 * falls short of the plan by more than 5%, the host, not the sticks, is the bottleneck.
 */
export function simBenchVerdict(measuredFps: number, plan: Plan, stickStats: Array<{ hostLateShare: number }>): SimBenchVerdict {
  const hostLateShare = stickStats.reduce((a, s) => Math.max(a, s.hostLateShare), 0);
  const ratio = plan.throughputFps > 0 ? measuredFps / plan.throughputFps : 0;
  const hostLimited = hostLateShare > 0.05 && ratio < 0.95;
  const planned = `the planner predicts ${plan.throughputFps.toFixed(1)}/s for ${plan.sticks} simulated stick${plan.sticks > 1 ? 's' : ''} (limited by ${plan.bottleneck})`;
  const message = hostLimited
    ? `the host, not the simulated sticks, is the bottleneck: ${measuredFps.toFixed(1)}/s measured, ${(ratio * 100).toFixed(0)}% of what ${planned}; ` +
      `${(hostLateShare * 100).toFixed(0)}% of results were computed after the stick would have returned them. Use 'ncs2 plan' for what real sticks would do`
    : `${measuredFps.toFixed(1)}/s measured, ${(ratio * 100).toFixed(0)}% of what ${planned}; the host kept up`;
  return { measuredFps, plannedFps: plan.throughputFps, ratio, hostLateShare, hostLimited, message };
}
