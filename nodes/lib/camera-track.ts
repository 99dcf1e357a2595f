/**
 * What an ncs2-track node does, without Node-RED: reads the detections ncs2-infer's detection
 * preset put on msg.payload (boxes in pixels of the frame), tracks them per camera, and turns the
 * tracker's events into messages (with the best-scoring crop and the frame) plus one message per
 * frame with the current tracks and zone counts.
 */
import sharp from 'sharp';
import { InputError, Tracker, cropJpeg, jpegSize, type NormBox, type TrackEvent, type TrackInfo, type TrackerDetection } from '../../src/engine';
import type { TrackSettings } from './camera-settings';
import type { NodeMessage } from './red';

/** Cameras tracked by one node at most (each has its own tracker); beyond it messages are refused. */
export const MAX_CAMERAS = 64;

interface Size {
  width: number;
  height: number;
}

type PixelBox = NormBox;

function toPixels(b: NormBox, s: Size): PixelBox {
  return { x: b.x * s.width, y: b.y * s.height, w: b.w * s.width, h: b.h * s.height };
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length} (first: ${JSON.stringify(value[0])?.slice(0, 80)})`;
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`;
  return JSON.stringify(value)?.slice(0, 80) ?? String(value);
}

function isDetection(d: unknown): d is { label: unknown; score: number; box: PixelBox } {
  const o = d as { score?: unknown; box?: Record<string, unknown> };
  return typeof o === 'object' && o !== null && typeof o.score === 'number' && typeof o.box === 'object' && o.box !== null && ['x', 'y', 'w', 'h'].every((k) => typeof o.box![k] === 'number');
}

/** The frame's size: msg.camera as ncs2-camera sets it, else read from the frame on msg.image. */
async function frameSize(msg: NodeMessage): Promise<Size> {
  const camera = msg.camera as { width?: unknown; height?: unknown } | undefined;
  if (typeof camera?.width === 'number' && typeof camera.height === 'number' && camera.width > 0 && camera.height > 0) return { width: camera.width, height: camera.height };
  if (Buffer.isBuffer(msg.image)) {
    const size = jpegSize(msg.image) ?? (await sharp(msg.image).metadata());
    if (size.width && size.height) return { width: size.width, height: size.height };
  }
  throw new InputError('ncs2-track needs the frame size to place boxes in zones: msg.camera {width, height} as ncs2-camera sets it, or the frame as an encoded image on msg.image');
}

export interface TrackOutput {
  events: NodeMessage[];
  tracks: NodeMessage;
}

export class TrackController {
  private readonly trackers = new Map<string, Tracker>();

  constructor(private readonly settings: TrackSettings) {
    // fails now, at deploy, on options the engine refuses
    new Tracker(settings.tracker);
  }

  async onMessage(msg: NodeMessage): Promise<TrackOutput> {
    const detections = msg.payload;
    if (!Array.isArray(detections) || !detections.every(isDetection)) {
      throw new InputError(
        `ncs2-track expects msg.payload to be one frame's detections from ncs2-infer with the detection preset (an array of {label, score, box: {x, y, w, h}} in pixels), got ${describe(detections)}`,
      );
    }
    const size = await frameSize(msg);
    const camera = msg.camera as { id?: unknown; frame?: unknown; timestamp?: unknown } | undefined;
    const cameraId = typeof camera?.id === 'string' ? camera.id : '';
    const tracker = this.trackerFor(cameraId);
    const image = Buffer.isBuffer(msg.image) ? msg.image : undefined;
    const timestamp = typeof camera?.timestamp === 'number' ? camera.timestamp : Date.now();
    const frame = typeof camera?.frame === 'number' ? camera.frame : undefined;
    const normalised: TrackerDetection[] = detections.map((d) => ({
      label: String(d.label),
      score: d.score,
      box: { x: d.box.x / size.width, y: d.box.y / size.height, w: d.box.w / size.width, h: d.box.h / size.height },
    }));
    const events = tracker.update(normalised, { timestamp, frame, image });
    const eventMessages = await Promise.all(events.map((e) => this.eventMessage(e, msg, size, cameraId, image)));
    const tracks: TrackInfo[] = tracker.snapshot().map((t) => ({ ...t, box: toPixels(t.box, size) }));
    return {
      events: eventMessages,
      tracks: { topic: cameraId ? `${cameraId}/tracks` : 'tracks', payload: { tracks, counts: tracker.counts() }, camera: msg.camera, image: msg.image },
    };
  }

  private trackerFor(cameraId: string): Tracker {
    let tracker = this.trackers.get(cameraId);
    if (!tracker) {
      if (this.trackers.size >= MAX_CAMERAS) throw new InputError(`ncs2-track already tracks ${MAX_CAMERAS} cameras (by msg.camera.id); use one ncs2-track node per group of cameras`);
      tracker = new Tracker(this.settings.tracker);
      this.trackers.set(cameraId, tracker);
    }
    return tracker;
  }

  private async eventMessage(e: TrackEvent, msg: NodeMessage, size: Size, cameraId: string, image: Buffer | undefined): Promise<NodeMessage> {
    const { best, box, ...rest } = e;
    const payload: Record<string, unknown> = { ...rest, camera: cameraId || undefined };
    if (box) payload.box = toPixels(box, size);
    const out: NodeMessage = { topic: [cameraId, e.zone ?? e.line, e.type].filter(Boolean).join('/'), payload, camera: msg.camera };
    if (best) {
      payload.best = { box: toPixels(best.box, size), score: best.score, timestamp: best.timestamp, frame: best.frame };
      if (this.settings.crop && best.image) out.crop = await cropJpeg(best.image, best.box, this.settings.crop.padding);
    }
    if (image) out.snapshot = image;
    return out;
  }
}
