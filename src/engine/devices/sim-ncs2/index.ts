export { SimNcs2Device, type SimNcs2Options, type SimNcs2Telemetry, type SimNcs2Stats, type SimDeviceGraph } from './sim-ncs2-device';
export { serviceTimeMs, executorTimeMs, transferTimeMs, computeEfficiency, timingParams, DEFAULT_TIMING, type Ncs2TimingParams, type UsbGeneration, type ServiceOptions } from './timing';
export { PUBLISHED_FIGURES, fitTiming, mobilenetSsdArchitecture, type PublishedFigure } from './calibration';
export { StickModel, type Booking, type StickRequest } from './stick-model';
export { ThermalModel, DEFAULT_THERMAL, type ThermalParams } from './thermal-model';
export { UsbLink, Lane } from './lanes';
export { SimComputePool, sharedComputePool } from './compute-pool';
export { prepareFp16Model, roundToFp16, toHalfBits, halfBitsToFloat } from './fp16';
export { analyzeModel, analyzeModelOffThread, prepareModelOffThread, type ModelTimingProfile, type PreparedModel } from './analyze';
