/**
 * The optimizer part of the promised programmatic API (shared/reference/seed-api.md):
 * GraphOptimizer.optimizeGraph / quantizeToInt8 and NCS2PerformanceOptimizer.optimizeModel,
 * all thin layers over optimizeModel that write their output atomically.
 */
import { OptimizeOptionsError } from './errors';
import { OptimizeOptions, OptimizeReport, OptimizeTarget, optimizeModel } from './optimize';
import { CalibrationSource } from './calibration-data';
import { writeModelAtomic } from './write';
import { getOptimalConfig, type OptimalConfig, type OptimalConfigOptions } from '../../pipeline/batch-optimizer';

/**
 * The design's configuration. useInt8 / useFp16 choose the precision; the optimizer
 * settings below them are additions. The remaining fields configure the engine
 * (batching, pools, pipeline, thermal policy, affinity), not the graph, and are carried
 * here only so one config object serves both; the optimizer ignores them.
 */
export interface OptimizationConfig {
  useInt8?: boolean;
  useFp16?: boolean;
  enableBatching?: boolean;
  optimalBatchSize?: number;
  enableZeroCopy?: boolean;
  useMemoryPooling?: boolean;
  maxParallelGraphs?: number;
  pipelineDepth?: number;
  targetTemperatureC?: number;
  enableThermalThrottling?: boolean;
  cpuAffinityCores?: number[];
  /** Optimizer settings (see OptimizeOptions). */
  target?: OptimizeTarget;
  calibration?: CalibrationSource;
  calibrationMethod?: OptimizeOptions['method'];
  perChannel?: boolean;
  foldPreprocessing?: OptimizeOptions['foldPreprocessing'];
  fp16Io?: boolean;
}

function toOptions(config: OptimizationConfig, target: OptimizeTarget): OptimizeOptions {
  if (config.useInt8 && config.useFp16) {
    throw new OptimizeOptionsError('useInt8 and useFp16 are both set: a graph has one precision; choose one');
  }
  const precision = config.useInt8 ? 'int8' : config.useFp16 ? 'fp16' : 'fp32';
  const options: OptimizeOptions = { precision, target };
  if (config.foldPreprocessing !== undefined) options.foldPreprocessing = config.foldPreprocessing;
  if (precision === 'int8') {
    options.calibration = config.calibration;
    if (config.calibrationMethod !== undefined) options.method = config.calibrationMethod;
    if (config.perChannel !== undefined) options.perChannel = config.perChannel;
  }
  if (precision === 'fp16' && config.fp16Io !== undefined) options.fp16Io = config.fp16Io;
  return options;
}

export class GraphOptimizer {
  /**
   * Optimizes modelPath into outputPath: useInt8 -> INT8 (needs config.calibration),
   * useFp16 -> FP16, neither -> float32 (only foldPreprocessing applies).
   */
  static async optimizeGraph(modelPath: string, outputPath: string, config: OptimizationConfig = {}): Promise<OptimizeReport> {
    const { bytes, report } = await optimizeModel(modelPath, toOptions(config, config.target ?? 'cpu'));
    await writeModelAtomic(outputPath, bytes);
    return report;
  }

  /** INT8 with the defaults: per-channel 7-bit weights, uint8 activations, min/max calibration. */
  static async quantizeToInt8(modelPath: string, calibrationData: CalibrationSource, outputPath: string): Promise<OptimizeReport> {
    const { bytes, report } = await optimizeModel(modelPath, { precision: 'int8', calibration: calibrationData });
    await writeModelAtomic(outputPath, bytes);
    return report;
  }
}

export class NCS2PerformanceOptimizer {
  constructor(readonly config: OptimizationConfig = {}) {}

  /**
   * The graph for an NCS2: FP16 (the stick's only precision). useInt8 is refused with the
   * reason; useFp16 may be left unset.
   */
  async optimizeModel(modelPath: string, outputPath: string): Promise<OptimizeReport> {
    const options = toOptions({ ...this.config, useFp16: !this.config.useInt8 }, 'ncs2');
    const { bytes, report } = await optimizeModel(modelPath, options);
    await writeModelAtomic(outputPath, bytes);
    return report;
  }

  /** The config for `deviceCount` devices, derived from the planner (sticks) or a measured sweep (`{ device: 'cpu' }`); see getOptimalConfig. */
  getOptimalConfig(model: string | Uint8Array, deviceCount: number, options: OptimalConfigOptions = {}): Promise<OptimalConfig> {
    return getOptimalConfig(model, deviceCount, options);
  }
}
