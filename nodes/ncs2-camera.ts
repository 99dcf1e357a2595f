/**
 * ncs2-camera: frames from an RTSP or MJPEG stream, a snapshot URL, a V4L2 device or a video file
 * (decoded by the system's ffmpeg), one JPEG message per frame at a capped rate, optionally only
 * frames with motion. User and password live in Node-RED credentials.
 */
import { CameraController } from './lib/camera-controller';
import { parseCameraSettings } from './lib/camera-settings';
import { resolveConfigPath } from './lib/paths';
import { inputKindOf } from '../src/engine';
import type { NodeAPI, NodeDef, NodeMessage, RedNode } from './lib/red';

/** The Express response's part the snapshot endpoint uses (lib/red types only the JSON part). */
interface ImageResponse {
  status(code: number): ImageResponse;
  set(field: string, value: string): ImageResponse;
  send(body: Buffer): void;
  json(body: unknown): void;
}

type CameraNodeDef = NodeDef & Record<string, unknown>;
type CameraNode = RedNode & { credentials?: { username?: string; password?: string }; send(msg: NodeMessage): void };

export = function register(RED: NodeAPI): void {
  /** Running camera nodes by id, for the snapshot endpoint. */
  const running = new Map<string, CameraController>();

  function Ncs2CameraNode(this: CameraNode, def: CameraNodeDef): void {
    RED.nodes.createNode(this, def);
    let controller: CameraController;
    try {
      const settings = parseCameraSettings(def, def.name || def.id, this.credentials ?? {});
      const source = settings.source;
      // a relative video file is looked up as the other dialogs' paths are: user directory, then this package
      if ((source.kind ?? inputKindOf(source.url)) === 'file') source.url = resolveConfigPath(source.url, RED.settings.userDir);
      controller = new CameraController({
        settings,
        send: (msg) => this.send(msg),
        status: (status) => this.status(status),
        warn: (message) => this.warn(message),
        log: (message) => this.log(message),
        error: (err) => this.error(err),
        words: {
          connecting: RED._('ncs2-camera.status.connecting'),
          reconnecting: RED._('ncs2-camera.status.reconnecting'),
          ffmpegMissing: RED._('ncs2-camera.status.ffmpegMissing'),
          ended: RED._('ncs2-camera.status.ended'),
          still: RED._('ncs2-camera.status.still'),
          dropped: RED._('ncs2-camera.status.dropped'),
        },
      });
    } catch (err) {
      this.error(`ncs2-camera ${def.name || def.id} is invalid: ${(err as Error).message}`);
      this.status({ fill: 'red', shape: 'ring', text: 'invalid settings' });
      return;
    }
    running.set(def.id, controller);
    this.on('close', (_removed, done) => {
      running.delete(def.id);
      controller.close().then(done, (err: Error) => {
        this.warn(`stopping the camera failed: ${err.message}`);
        done();
      });
    });
    controller.start();
  }
  RED.nodes.registerType('ncs2-camera', Ncs2CameraNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });

  // The newest frame of a deployed camera: the ncs2-track editor draws zones over it.
  RED.httpAdmin.get('/ncs2/cameras/:id/snapshot', RED.auth.needsPermission('ncs2-camera.read'), (req, res) => {
    const image = res as unknown as ImageResponse;
    const frame = running.get(req.params.id)?.latestFrame;
    if (!frame) {
      image.status(404).json({ error: `camera ${req.params.id} has no frame yet: deploy it and wait until its status shows frames` });
      return;
    }
    image.status(200).set('Content-Type', 'image/jpeg').set('Cache-Control', 'no-store').send(frame);
  });
};
