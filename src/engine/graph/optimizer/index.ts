/** Model optimizer: FP16 conversion, INT8 QDQ quantization with calibration, folded preprocessing. */
export { optimizeModel, formatReport, inspectRuntimeGraph, NCS2_INT8_REFUSAL, MIN_OPSET, MAX_OPSET } from './optimize';
export type { OptimizeOptions, OptimizeReport, OptimizeResult, OptimizePrecision, OptimizeTarget, RuntimeCheck } from './optimize';
export { writeModelAtomic } from './write';
export { GraphOptimizer, NCS2PerformanceOptimizer, type OptimizationConfig } from './seed-api';
export { UnsupportedModelError, CalibrationError, OptimizeOptionsError } from './errors';
export { FP32_ONLY_OPS, ORT_CPU_FP16_KERNELS } from './fp16';
export { QUANTIZABLE_OPS } from './qdq';
export type { QuantizedNode, QuantKind } from './qdq';
export type { NodeRef, KeptFloat } from './report';
export type { CalibrationMethod } from './calibrate';
export type { CalibrationSource, CalibrationArray, ImageCalibrationOptions } from './calibration-data';
export type { FoldPreprocessingOptions, FoldReport } from './fold-preprocessing';
export { readNpy, writeNpyFloat32, NpyFormatError, type NpyArray } from './npy';
