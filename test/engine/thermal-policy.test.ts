import { strict as assert } from 'assert';
import { ThermalPolicy } from '../../src/engine/pipeline/thermal-policy';

describe('thermal policy', function () {
  it('lowers the share above the target and restores it only after cooling by the hysteresis', function () {
    const p = new ThermalPolicy({ targetC: 70, criticalC: 85, hysteresisC: 5, latencyRise: 1.5, hotShare: 0.25 });
    assert.equal(p.update({ temperatureC: 60 }).state, 'normal');
    assert.equal(p.update({ temperatureC: 71 }).state, 'hot');
    assert.equal(p.share, 0.25);
    assert.equal(p.update({ temperatureC: 68 }).state, 'hot', 'still within the hysteresis band');
    assert.equal(p.update({ temperatureC: 65 }).state, 'normal');
    assert.equal(p.share, 1);
  });

  it('pauses at the critical limit and resumes below it minus the hysteresis', function () {
    const p = new ThermalPolicy();
    assert.equal(p.update({ temperatureC: 86 }).state, 'critical');
    assert.equal(p.share, 0);
    assert.equal(p.update({ temperatureC: 82 }).state, 'critical');
    assert.equal(p.update({ temperatureC: 79 }).state, 'hot');
    assert.match(p.decision.reason, /above the target 70 C/);
  });

  it('treats a throttle level or rising service time as hot, even without a temperature', function () {
    const p = new ThermalPolicy();
    assert.equal(p.update({ throttleLevel: 1 }).state, 'hot');
    assert.match(p.decision.reason, /throttle level 1/);
    assert.equal(p.update({ slowdown: 1.2 }).state, 'normal');
    assert.equal(p.update({ slowdown: 1.8 }).state, 'hot');
    assert.match(p.decision.reason, /1\.80x its best/);
    assert.equal(p.update({}).state, 'normal', 'unknown temperature is not a reason to throttle');
  });
});
