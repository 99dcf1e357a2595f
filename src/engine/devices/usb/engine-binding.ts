/**
 * Keeps an engine's device list in step with the stick registry: when a stick bound to an engine
 * device detaches (a usb 'disconnect' event, or a simulated unplug through the same path), the
 * device is removed from the engine, whose retry path moves the tasks that were running on it to
 * the remaining devices.
 */
import type { StickRecord, StickRegistry } from './registry';

export interface DeviceHost {
  getDevice(id: string): unknown;
  removeDevice(id: string): Promise<void>;
  emit?(event: 'warning', err: Error, about: { device?: string }): boolean;
}

/** Returns a function that undoes the binding (call it when the engine closes). */
export function bindStickRegistry(registry: StickRegistry, engine: DeviceHost): () => void {
  const onDetach = (record: StickRecord) => {
    if (!record.deviceId || !engine.getDevice(record.deviceId)) return;
    engine.removeDevice(record.deviceId).catch((err: Error) => {
      engine.emit?.('warning', new Error(`removing ${record.deviceId} after its stick ${record.path} detached failed: ${err.message}`), { device: record.deviceId });
    });
  };
  registry.on('detach', onDetach);
  return () => {
    registry.off('detach', onDetach);
  };
}
