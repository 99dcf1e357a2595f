/**
 * The engine's public entry: everything a script, the CLI, the benchmarks or the Node-RED nodes
 * use. They import nothing else from the engine (eslint no-restricted-imports), so what is not
 * exported here can change without breaking them. No Node-RED import anywhere below this directory.
 */
export * from './errors';
export * from './tensor';
export { InferenceEngine } from './pipeline/engine';
export type { EngineOptions, GraphOptions, GraphHandle, SubmitOptions, TaskResult, TaskEvent, TaskTimings, EngineStats, GraphStats, QueuePolicy } from './pipeline/engine';
export { getEngine, closeEngine } from './pipeline/singleton';
export { CpuDevice, type CpuDeviceOptions } from './devices/cpu/cpu-device';
export { createDevice, checkDeviceSpec, maxDeviceThreads, THREADS_PER_CORE_LIMIT, MAX_DEVICE_IN_FLIGHT, type DeviceSpec, type CpuDeviceSpec } from './devices/factory';
export type { Device, DeviceInfo, DeviceKind, DeviceGraph, DeviceTelemetry, Precision, SessionSettings, LoadRequest, RunRequest, RunResult } from './devices/device';
export { MemoryPool, MemoryPoolManager, getMemoryPoolManager, releasePooled, type MemoryPoolStats, type PooledBuffer } from './memory/memory-pool';
export { LruCache } from './graph/lru-cache';
export { readModelInfo, hashModel, ModelFormatError, type ModelInfo, type TensorInfo } from './graph/model-info';
export { countModelOps, type OpCount } from './graph/op-count';
export { buildMlp, buildMobileNetLike, buildGemm } from './graph/builder';
export type { DeviceStatsSnapshot } from './telemetry/device-stats';
export { EdgePipeline, DevicePipeline, getEdgePipeline, type EdgePipelineOptions, type FinishedTask, type TaskInput } from './pipeline/edge-pipeline';
export { BatchProcessor, BatchOptimizer, getOptimalConfig, type BatchMeasurement, type OptimalConfig, type OptimalConfigOptions } from './pipeline/batch-optimizer';
export { DEFAULT_BATCHING, type BatchingOptions } from './pipeline/batcher';
export type { StageName, StageStats, ConcurrencyChoice, Bottleneck as StageBottleneck } from './pipeline/stages';
export * from './io';
export { TensorGatherer, groupable } from './io/gather';
export { SimNcs2Device, serviceTimeMs, PUBLISHED_FIGURES, type SimNcs2Options, type UsbGeneration } from './devices/sim-ncs2';
export { StickRegistry, getStickRegistry, listSticks, type StickRecord, type StickListing } from './devices/usb/registry';
export * from './host';
export { backgroundPriority, type BackgroundPriority } from './host/thread-priority';
export * from './planner';
export { ThermalOptimizer } from './telemetry/thermal-optimizer';
export { PerformanceAnalyzer, type PerformanceAnalysis, type AnalyzeInput, type DeviceEvidence, type Recommendation, type RecommendationId } from './telemetry/analyzer';
export { LatencyHistogram, type LatencySummary } from './telemetry/stats';
export { PrometheusExporter } from './telemetry/prometheus';
export { ensurePeak, markPeakStale, measurePeaksWhenIdle, readCachedPeak, peakCachePath, peakKey, peakKeyFor, onnxruntimeVersion, PEAK_PRECISIONS, type PeakPrecision, type PeakResult, type IdlePeakOptions } from './telemetry/peak';
export { ThermalPolicy, DEFAULT_THERMAL_LIMITS, type ThermalLimits, type ThermalState } from './pipeline/thermal-policy';
export * from './graph/optimizer';
export { optimizeCached, type CachedOptimizeOptions, type CachedOptimizeResult } from './graph/optimizer/cache';
/** The engine's typed event map (name to listener arguments), the 'thermal' event's payload, and a graph's load state. */
export type { EngineEvents, ThermalEvent, PipelineStats, GraphState, WarningSubject } from './pipeline/engine';
export * from './devices/remote';
export * from './camera';
