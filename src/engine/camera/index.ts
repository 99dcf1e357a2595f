/** Camera automations: frame sources over ffmpeg, motion gating, tracking, zones and events. */
export { JpegSplitter, jpegSize } from './jpeg-stream';
export {
  FrameSource,
  FfmpegMissingError,
  checkFfmpeg,
  ffmpegArguments,
  inputKindOf,
  redactUrl,
  urlWithCredentials,
  type CameraFrame,
  type CameraInfo,
  type CameraInputKind,
  type FrameHandler,
  type FrameSourceCounts,
  type FrameSourceOptions,
  type SourceStatus,
} from './frame-source';
export { MotionGate, checkMotionOptions, type MotionCounts, type MotionOptions, type MotionResult } from './motion';
export { pointInPolygon, sideOfLine, segmentsIntersect, parsePoints, type NormPoint, type NormPolygon } from './geometry';
export {
  Tracker,
  checkTrackerOptions,
  type BestSighting,
  type FrameContext,
  type LabelFilter,
  type LineDef,
  type NormBox,
  type TrackEvent,
  type TrackEventType,
  type TrackInfo,
  type TrackerDetection,
  type TrackerOptions,
  type ZoneDef,
} from './tracker';
export { cropJpeg } from './crop';
