/**
 * The engine's public entry: everything a script, the CLI or the Node-RED nodes use.
 * No Node-RED import anywhere below this directory.
 */
export * from './errors';
export * from './tensor';
export { InferenceEngine } from './pipeline/engine';
export type { EngineOptions, GraphOptions, GraphHandle, SubmitOptions, TaskResult, TaskEvent, TaskTimings, EngineStats, GraphStats, QueuePolicy } from './pipeline/engine';
export { getEngine, closeEngine } from './pipeline/singleton';
export { CpuDevice, type CpuDeviceOptions } from './devices/cpu/cpu-device';
export { createDevice, type DeviceSpec, type CpuDeviceSpec } from './devices/factory';
export type { Device, DeviceInfo, DeviceKind, DeviceGraph, DeviceTelemetry, Precision, SessionSettings } from './devices/device';
export { MemoryPool, MemoryPoolManager, getMemoryPoolManager, type MemoryPoolStats, type PooledBuffer } from './memory/memory-pool';
export { LruCache } from './graph/lru-cache';
export { readModelInfo, hashModel, ModelFormatError, type ModelInfo, type TensorInfo } from './graph/model-info';
export { countModelOps, type OpCount } from './graph/op-count';
export { buildMlp, buildMobileNetLike, buildGemm } from './graph/builder';
export type { DeviceStatsSnapshot } from './telemetry/device-stats';
export { EdgePipeline, DevicePipeline, getEdgePipeline, type EdgePipelineOptions, type FinishedTask, type TaskInput } from './pipeline/edge-pipeline';
export { BatchProcessor, BatchOptimizer, type BatchMeasurement } from './pipeline/batch-optimizer';
export type { BatchingOptions } from './pipeline/batcher';
export * from './io';
export { SimNcs2Device, serviceTimeMs, PUBLISHED_FIGURES, type SimNcs2Options } from './devices/sim-ncs2';
export { StickRegistry, getStickRegistry, listSticks, type StickRecord } from './devices/usb/registry';
export * from './host';
export * from './planner';
export { ThermalOptimizer } from './telemetry/thermal-optimizer';
export { ThermalPolicy, DEFAULT_THERMAL_LIMITS, type ThermalLimits, type ThermalState } from './pipeline/thermal-policy';
export * from './graph/optimizer';
export * from './camera';
