/**
 * The timing model of one simulated Myriad X, as pure functions (the device paces real
 * completions with it; the planner runs it in virtual time).
 *
 * A request: its input crosses USB, one of the stick's 2 executors computes it, its output crosses
 * back. Executor time = t0 + (1 - d) x c x G^p + d x ops / depthwiseRate, where G is the
 * network's GFLOPs (2 ops per MAC) and d its depthwise share; parameters come from
 * calibration.ts (fitted to published figures). Transfers move FP16 (2 bytes) per float element.
 */
import { fitTiming } from './calibration';

export type UsbGeneration = 2 | 3;

export interface Ncs2TimingParams {
  /** Published DNN peak of the stick (1 TOPS from two Neural Compute Engines). */
  peakOpsPerSec: number;
  /** Requests the stick computes at once (the MYRIAD plugin's executors). */
  executors: number;
  requestOverheadMs: number;
  denseCoefMs: number;
  denseExponent: number;
  depthwiseOpsPerSec: number;
  /** USB 3 payload rate per stick: the middle of the published 400-500 MB/s. */
  usb3BytesPerSec: number;
  /**
   * USB 2 payload rate of a whole bus, shared by its sticks: the published ceiling (under 60 MB/s),
   * so USB 2 predictions are upper bounds.
   */
  usb2BytesPerSec: number;
}

const FIT = fitTiming(2);

export const DEFAULT_TIMING: Readonly<Ncs2TimingParams> = Object.freeze({
  peakOpsPerSec: 1e12,
  executors: 2,
  ...FIT,
  usb3BytesPerSec: 450e6,
  usb2BytesPerSec: 60e6,
});

export function timingParams(overrides: Partial<Ncs2TimingParams> = {}): Ncs2TimingParams {
  return { ...DEFAULT_TIMING, ...overrides };
}

/** Time one executor spends on one inference of `ops` ops (no queueing, no thermal pauses). */
export function executorTimeMs(ops: number, depthwiseShare = 0, p: Ncs2TimingParams = DEFAULT_TIMING): number {
  const d = Math.min(1, Math.max(0, depthwiseShare));
  const g = Math.max(0, ops) / 1e9;
  // The power law is calibrated between 0.2 MFLOP and 3.3 GFLOPs; it must never claim more than
  // an executor's share of the published peak, whatever the network.
  const perExecutorPeak = p.peakOpsPerSec / p.executors;
  const dense = Math.max((1 - d) * p.denseCoefMs * Math.pow(g, p.denseExponent), ((1 - d) * g * 1e9 * 1000) / perExecutorPeak);
  const depthwise = ((d * g * 1e9) / p.depthwiseOpsPerSec) * 1000;
  return p.requestOverheadMs + dense + depthwise;
}

/** Time to move `bytes` over an idle link of the given generation. */
export function transferTimeMs(bytes: number, usb: UsbGeneration, p: Ncs2TimingParams = DEFAULT_TIMING): number {
  const rate = usb === 3 ? p.usb3BytesPerSec : p.usb2BytesPerSec;
  return (Math.max(0, bytes) / rate) * 1000;
}

export interface ServiceOptions {
  depthwiseShare?: number;
  inputBytes: number;
  outputBytes?: number;
  usb: UsbGeneration;
  timing?: Ncs2TimingParams;
}

/** One request alone on an idle stick: upload + compute + download (the synchronous latency). */
export function serviceTimeMs(opsPerInference: number, o: ServiceOptions): number {
  const p = o.timing ?? DEFAULT_TIMING;
  return transferTimeMs(o.inputBytes, o.usb, p) + executorTimeMs(opsPerInference, o.depthwiseShare ?? 0, p) + transferTimeMs(o.outputBytes ?? 0, o.usb, p);
}

/** Compute efficiency against the published peak with every executor busy on this network. */
export function computeEfficiency(opsPerInference: number, depthwiseShare = 0, p: Ncs2TimingParams = DEFAULT_TIMING): number {
  const perSec = (p.executors / executorTimeMs(opsPerInference, depthwiseShare, p)) * 1000;
  return (perSec * opsPerInference) / p.peakOpsPerSec;
}

/** Bytes a tensor occupies on the USB link: float tensors travel as FP16, others as they are. */
export function wireBytesPerElement(type: string): number {
  switch (type) {
    case 'float32':
    case 'float64':
    case 'float16':
      return 2;
    case 'uint8':
    case 'int8':
    case 'bool':
      return 1;
    case 'int16':
    case 'uint16':
      return 2;
    case 'int32':
      return 4;
    case 'int64':
      return 8;
    default:
      return 4;
  }
}
