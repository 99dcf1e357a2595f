import { strict as assert } from 'assert';
import { discoverSensors, hottestCpuTemperature, readSensors } from '../../src/engine/telemetry/thermal-sensors';
import { readCpuTemperature } from '../../src/engine/telemetry/thermal';
import { ThermalOptimizer } from '../../src/engine/telemetry/thermal-optimizer';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2/sim-ncs2-device';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { StickModel } from '../../src/engine/devices/sim-ncs2/stick-model';
import { FakeDevice } from '../engine/fake-device';
import { fakeRoot } from '../host/fake-sysfs';

describe('thermal sensors, the simulated stick\'s thermal model and ThermalOptimizer', function () {
  it('reads CPU thermal zones and hwmon chips; other sensors are listed but not the CPU', function () {
    const fake = fakeRoot({
      'sys/class/thermal/thermal_zone0/type': 'x86_pkg_temp\n',
      'sys/class/thermal/thermal_zone0/temp': '55000\n',
      'sys/class/thermal/thermal_zone1/type': 'iwlwifi_1\n',
      'sys/class/thermal/thermal_zone1/temp': '70000\n',
      'sys/class/hwmon/hwmon0/name': 'coretemp\n',
      'sys/class/hwmon/hwmon0/temp1_input': '61000\n',
      'sys/class/hwmon/hwmon0/temp1_label': 'Package id 0\n',
      'sys/class/hwmon/hwmon0/temp2_input': '-273000\n',
      'sys/class/hwmon/hwmon1/name': 'nvme\n',
      'sys/class/hwmon/hwmon1/temp1_input': '80000\n',
    });
    try {
      const sensors = discoverSensors(fake.root);
      assert.equal(sensors.length, 5);
      assert.deepEqual(sensors.filter((s) => s.cpu).map((s) => `${s.source}:${s.name}`), ['thermal_zone:x86_pkg_temp', 'hwmon:coretemp', 'hwmon:coretemp']);
      assert.equal(hottestCpuTemperature(sensors), 61, 'the hottest CPU sensor, not the nvme or wifi');
      const readings = readSensors(sensors);
      assert.equal(readings.find((r) => r.label === 'Package id 0')!.temperatureC, 61);
      assert.equal(readings.find((r) => r.file.endsWith('temp2_input'))!.temperatureC, undefined, 'an absent probe is no reading');
    } finally {
      fake.remove();
    }
  });

  it('a host without sensors has an unknown temperature, not 0', function () {
    const empty = fakeRoot({ 'etc/hostname': 'vm' });
    try {
      assert.deepEqual(discoverSensors(empty.root), []);
      assert.equal(hottestCpuTemperature([]), undefined);
    } finally {
      empty.remove();
    }
    const cpuSensors = discoverSensors('/').filter((s) => s.cpu);
    if (cpuSensors.length === 0) assert.equal(readCpuTemperature(), undefined);
    else assert.equal(typeof readCpuTemperature(), 'number');
  });

  it('the stick heats with its duty cycle, throttles at its guards with pauses, and recovers after cooling (virtual time)', function () {
    const stick = new StickModel({ thermal: { timeConstantMs: 1000 } });
    const request = { ops: 1e9, depthwiseShare: 0, inputBytes: 1000, outputBytes: 100 };
    let t = 0;
    const cool = stick.book(t, request);
    assert.equal(cool.pauseMs, 0);
    // Full load for 5 time constants: approaches ambient + rise (75 C), past the first guard (70 C).
    while (t < 5000) {
      const b = stick.book(t, request);
      t = b.execStart;
    }
    assert.ok(stick.thermal.temperatureC > 68, `${stick.thermal.temperatureC.toFixed(1)} C under full load`);
    stick.forceTemperature(85, t);
    const hot = stick.book(t, request);
    assert.equal(hot.throttleLevel, 2);
    assert.ok(hot.serviceMs >= 1.9 * cool.serviceMs - cool.uploadMs, 'level 2 pauses as long as it computes');
    // Idle for 3 time constants: back toward ambient, no throttling.
    t = hot.downloadEnd + 3000;
    const after = stick.book(t, request);
    assert.equal(after.throttleLevel, 0);
    assert.equal(after.pauseMs, 0);
    assert.ok(stick.thermal.temperatureC < 45);
  });

  it('ThermalOptimizer: temperature, headroom and throttle decisions over an engine\'s devices', async function () {
    const registry = new StickRegistry();
    const warm = new SimNcs2Device({ id: 'warm', registry });
    const hot = new SimNcs2Device({ id: 'hot', registry });
    const nosensor = new FakeDevice({ id: 'nosensor' });
    const engine = new InferenceEngine({ devices: [warm, hot, nosensor] });
    try {
      warm.forceTemperature(60);
      hot.forceTemperature(75);
      const t = new ThermalOptimizer(engine);
      assert.ok(Math.abs(t.getDeviceTemperature('warm')! - 60) < 0.5);
      assert.ok(Math.abs(t.getThermalHeadroom('warm')! - 10) < 0.5);
      assert.equal(t.shouldThrottle('warm'), false);
      assert.equal(t.shouldThrottle('warm', 55), true, 'above a lower target');
      assert.equal(t.shouldThrottle('hot'), true);
      assert.equal(t.shouldThrottle('hot', 90), true, 'the stick reports throttle level 1 whatever the target');
      assert.equal(t.getDeviceTemperature('nosensor'), undefined);
      assert.equal(t.getThermalHeadroom('nosensor'), undefined);
      assert.equal(t.shouldThrottle('nosensor'), false, 'unknown is no reason to throttle');
      assert.deepEqual(t.readings().map((r) => r.deviceId), ['hot', 'warm', 'nosensor']);
      assert.equal(t.hottest()!.deviceId, 'hot');
      assert.match(t.readings()[0].reason, /throttle level 1/);
      assert.throws(() => t.getDeviceTemperature('nope'), /no device 'nope'; expected one of warm, hot, nosensor/);
    } finally {
      await engine.close();
    }
  });
});
