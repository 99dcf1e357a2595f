import { strict as assert } from 'assert';
import { existsSync } from 'fs';
import { listSticks, NO_RUNTIME_STATE, StickRegistry, usbPath, type RegistryStatus, type StickRecord, type UsbConnectionEventLike, type UsbDeviceLike, type UsbLike } from '../../src/engine/devices/usb/registry';
import { bindStickRegistry } from '../../src/engine/devices/usb/engine-binding';

type Listener = (ev: UsbConnectionEventLike) => void;

/** A usb v3 stand-in: getDevices() and connect/disconnect listeners, with failures on demand. */
class FakeUsb implements UsbLike {
  readonly listeners = { connect: new Set<Listener>(), disconnect: new Set<Listener>() };
  getDevicesCalls = 0;
  constructor(
    public devices: UsbDeviceLike[] = [],
    private readonly failure?: { getDevices?: Error; addEventListener?: Error },
  ) {}
  async getDevices(): Promise<UsbDeviceLike[]> {
    this.getDevicesCalls++;
    if (this.failure?.getDevices) throw this.failure.getDevices;
    return [...this.devices];
  }
  addEventListener(type: 'connect' | 'disconnect', listener: Listener): void {
    if (this.failure?.addEventListener) throw this.failure.addEventListener;
    this.listeners[type].add(listener);
  }
  removeEventListener(type: 'connect' | 'disconnect', listener: Listener): void {
    this.listeners[type].delete(listener);
  }
  /** Dispatches like WebUSB, except that a listener's exception reaches the caller (so a test sees it). */
  plug(device: UsbDeviceLike): void {
    this.devices.push(device);
    for (const l of this.listeners.connect) l({ device });
  }
  unplug(device: UsbDeviceLike): void {
    this.devices = this.devices.filter((d) => d !== device);
    for (const l of this.listeners.disconnect) l({ device });
  }
  get listenerCount(): number {
    return this.listeners.connect.size + this.listeners.disconnect.size;
  }
}

const stick = (productId: number, bus: string, ports: number[], speed = 'super'): UsbDeviceLike => ({ vendorId: 0x03e7, productId, bus, ports, speed, serialNumber: null });
const mouse: UsbDeviceLike = { vendorId: 0x046d, productId: 0xc52b, bus: '1', ports: [3], speed: 'full' };

/** Records unhandled rejections and uncaught exceptions while `fn` runs (and a little after). */
async function noCrash(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown) => seen.push(reason);
  const onException = (err: unknown) => seen.push(err);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  }
  assert.deepEqual(seen, [], 'nothing escaped as an unhandled rejection or uncaught exception');
}

describe('NCS2 USB discovery and registry', function () {
  it('lists sticks by path with ids and state; a stick without runtime is never schedulable', async function () {
    const usb = new FakeUsb([stick(0x2485, '001', [1, 4], 'high'), stick(0xf63b, '2', [3]), stick(0x2150, '1', [2]), mouse]);
    const registry = new StickRegistry({ usb });
    const status = await registry.start();
    assert.equal(status.state, 'watching');
    const sticks = registry.listSticks();
    assert.deepEqual(sticks.map((s) => s.path), ['1-1.4', '1-2', '2-3']);
    assert.deepEqual(sticks.map((s) => s.ids), ['03e7:2485', '03e7:2150', '03e7:f63b']);
    assert.deepEqual(sticks.map((s) => s.firmware), ['unbooted', 'unbooted', 'booted']);
    assert.deepEqual(sticks.map((s) => s.usb), [2, 3, 3]);
    for (const s of sticks) {
      assert.equal(s.state, NO_RUNTIME_STATE);
      assert.equal(s.state, 'found, no NCS2 runtime installed');
      assert.equal(s.schedulable, false);
      assert.equal(s.simulated, false);
      assert.equal(s.deviceId, undefined, 'no Device is made up for a stick without a runtime');
    }
    registry.stop();
    assert.equal(usb.listenerCount, 0, 'stop removes the listeners');
  });

  it('attach and detach events keep the registry current (including the re-enumeration after boot)', async function () {
    const usb = new FakeUsb([]);
    const registry = new StickRegistry({ usb });
    const events: string[] = [];
    registry.on('attach', (r: StickRecord) => events.push(`+${r.path} ${r.ids}`));
    registry.on('detach', (r: StickRecord) => events.push(`-${r.path} ${r.ids}`));
    await registry.start();
    const unbooted = stick(0x2485, '3', [2]);
    usb.plug(unbooted);
    usb.plug(mouse);
    assert.deepEqual(registry.listSticks().map((s) => s.path), ['3-2']);
    // The runtime boots the firmware: the stick leaves as 2485 and comes back as f63b on the same port.
    const booted = stick(0xf63b, '3', [2]);
    usb.unplug(unbooted);
    usb.plug(booted);
    assert.equal(registry.getStick('3-2')!.firmware, 'booted');
    usb.unplug(booted);
    usb.unplug(mouse);
    assert.deepEqual(registry.listSticks(), []);
    assert.deepEqual(events, ['+3-2 03e7:2485', '-3-2 03e7:2485', '+3-2 03e7:f63b', '-3-2 03e7:f63b']);
    registry.stop();
  });

  it('a host without USB access reports "no USB access" once, cleanly: no listeners, no retry loop, nothing unhandled', async function () {
    await noCrash(async () => {
      const usb = new FakeUsb([], { getDevices: new Error('getDevices error: /sys/bus/usb/devices/ not found (errno 2)') });
      const registry = new StickRegistry({ usb });
      const statuses: RegistryStatus[] = [];
      registry.on('status', (s: RegistryStatus) => statuses.push(s));
      const status = await registry.start();
      assert.equal(status.state, 'no USB access');
      assert.match(status.reason!, /\/sys\/bus\/usb\/devices\/ not found .*pass the stick through/i);
      assert.equal((await registry.start()).state, 'no USB access');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(usb.getDevicesCalls, 1, 'not retried');
      assert.equal(usb.listenerCount, 0, 'no listener added where listing failed (usb v3 would reject unhandled)');
      assert.deepEqual(statuses.map((s) => s.state), ['starting', 'no USB access'], 'reported once');
      assert.deepEqual(registry.listSticks(), []);
      registry.stop();
    });
  });

  it('a usb module that cannot load, or hot-plug events that cannot start, become a status', async function () {
    const noModule = new StickRegistry({
      usb: () => {
        throw new Error('No native build was found for platform=linux arch=riscv64');
      },
    });
    const a = await noModule.start();
    assert.equal(a.state, 'no USB access');
    assert.match(a.reason!, /usb module could not load .*No native build/);
    const noEvents = new StickRegistry({ usb: new FakeUsb([stick(0x2485, '1', [1])], { addEventListener: new Error('hotplug not supported') }) });
    const b = await noEvents.start();
    assert.equal(b.state, 'listed, no hot-plug events');
    assert.match(b.reason!, /hotplug not supported/);
    assert.equal(noEvents.listSticks().length, 1, 'what was listed stays listed');
  });

  it('a throwing listener never escapes: not a subscriber, not a broken device object', async function () {
    await noCrash(async () => {
      const usb = new FakeUsb([]);
      const registry = new StickRegistry({ usb });
      const warnings: string[] = [];
      const seen: string[] = [];
      registry.on('warning', (e: Error) => warnings.push(e.message));
      registry.on('attach', () => {
        throw new Error('subscriber bug');
      });
      registry.on('attach', (r: StickRecord) => seen.push(r.path));
      await registry.start();
      assert.doesNotThrow(() => usb.plug(stick(0x2485, '1', [5])));
      assert.deepEqual(seen, ['1-5'], 'the other subscribers still hear the event');
      assert.match(warnings[0], /'attach' listener of the NCS2 registry threw: subscriber bug/);
      const serialThrows = { ...stick(0xf63b, '1', [6]) };
      Object.defineProperty(serialThrows, 'serialNumber', {
        get() {
          throw new Error('LIBUSB_ERROR_ACCESS');
        },
      });
      assert.doesNotThrow(() => usb.plug(serialThrows));
      assert.ok(registry.getStick('1-6'), 'listed without its serial');
      const broken = {} as UsbDeviceLike;
      Object.defineProperty(broken, 'vendorId', {
        get() {
          throw new Error('device vanished');
        },
      });
      assert.doesNotThrow(() => usb.plug(broken));
      assert.doesNotThrow(() => usb.unplug(broken));
      assert.ok(warnings.some((w) => /device vanished/.test(w)));
      registry.stop();
    });
  });

  it('listSticks() lists once and leaves nothing behind; a detach without an engine device removes nothing', async function () {
    const usb = new FakeUsb([stick(0x2485, '2', [1, 1, 3])]);
    const { status, sticks } = await listSticks({ usb });
    assert.equal(status.state, 'listed, no hot-plug events');
    assert.deepEqual(sticks.map((s) => [s.path, s.state]), [['2-1.1.3', NO_RUNTIME_STATE]]);
    assert.equal(usb.listenerCount, 0);
    assert.equal(usbPath({ vendorId: 0, productId: 0, bus: '004', ports: [] , address: 7 }), '4:7');

    const registry = new StickRegistry({ usb: new FakeUsb([stick(0x2485, '1', [1])]) });
    await registry.start();
    const removed: string[] = [];
    const unbind = bindStickRegistry(registry, { getDevice: () => undefined, removeDevice: async (id) => void removed.push(id) });
    registry.handleDetach(stick(0x2485, '1', [1]));
    assert.deepEqual(removed, []);
    unbind();
    registry.stop();
  });

  it('with the real usb v3 module on this host: a clean status either way', async function () {
    await noCrash(async () => {
      const registry = new StickRegistry();
      const status = await registry.start();
      if (!existsSync('/sys/bus/usb/devices')) {
        assert.equal(status.state, 'no USB access');
        assert.match(status.reason!, /not found/);
      } else {
        assert.ok(['watching', 'listed, no hot-plug events'].includes(status.state), `${status.state}: ${status.reason}`);
      }
      registry.stop();
    });
  });
});
