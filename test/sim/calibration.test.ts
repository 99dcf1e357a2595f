import { strict as assert } from 'assert';
import { PUBLISHED_FIGURES, fitTiming, mobilenetSsdArchitecture, type PublishedFigure } from '../../src/engine/devices/sim-ncs2/calibration';
import { DEFAULT_TIMING, computeEfficiency, executorTimeMs, serviceTimeMs } from '../../src/engine/devices/sim-ncs2/timing';
import { planThroughput } from '../../src/engine/planner/planner';

/** The model's value for a published figure, through the planner (the timing model in virtual time). */
function modelValue(f: PublishedFigure): number {
  // yolov8s-pose's GFLOPs are not published: its stick ratio is checked with googlenet-sized work.
  const ops = f.metric === 'stickRatio' ? 3.266e9 : f.ops;
  const m = { opsPerInference: ops, inputBytes: f.inputBytes, outputBytes: f.outputBytes, depthwiseShare: f.depthwiseShare };
  const plan = planThroughput(m, { sticks: f.sticks, usb: 3, requestsInFlight: f.requestsInFlight });
  if (f.metric === 'fps') return plan.throughputFps;
  if (f.metric === 'latencyMs') return plan.latencyMs.p50;
  const one = planThroughput(m, { sticks: 1, usb: 3, requestsInFlight: f.requestsInFlight / f.sticks });
  return plan.throughputFps / one.throughputFps;
}

describe('sim-ncs2 calibration against published figures', function () {
  it('reproduces every published figure within 15% (fitted and predicted), and prints the table', function () {
    const rows = PUBLISHED_FIGURES.map((f) => {
      const v = modelValue(f);
      return { f, v, err: v / f.value - 1 };
    });
    const fmt = (x: number) => (x >= 100 ? x.toFixed(1) : x.toFixed(2));
    console.log('\n      figure                   published    model   error  role   source');
    for (const { f, v, err } of rows) {
      console.log(`      ${f.id.padEnd(24)} ${fmt(f.value).padStart(9)} ${fmt(v).padStart(8)} ${((err >= 0 ? '+' : '') + (err * 100).toFixed(1) + '%').padStart(7)}  ${f.role.padEnd(5)}  ${f.source}`);
    }
    const p = DEFAULT_TIMING;
    console.log(`      fit: t0 ${p.requestOverheadMs.toFixed(3)} ms, dense ${p.denseCoefMs.toFixed(3)} ms x GFLOPs^${p.denseExponent.toFixed(4)}, depthwise ${(p.depthwiseOpsPerSec / 1e9).toFixed(2)} GOPS per executor`);
    for (const { f, err } of rows) assert.ok(Math.abs(err) <= 0.15, `${f.id}: model is ${(err * 100).toFixed(1)}% off the published ${f.value}`);
    // The fitted figures are reproduced by construction; the checks are the real test.
    for (const { f, err } of rows.filter((r) => r.f.role === 'fit')) assert.ok(Math.abs(err) < 0.01, `${f.id} is a fitted figure`);
    assert.ok(rows.filter((r) => r.f.role === 'check').length >= 4);
  });

  it('counts a MAC as 2 ops, like the figures: the MobileNet-SSD layer table matches its published 2.316 GFLOPs', function () {
    const { macs, depthwiseShare } = mobilenetSsdArchitecture();
    assert.ok(Math.abs((2 * macs) / 2.316e9 - 1) < 0.02, `2 x ${macs} MACs vs 2.316 GFLOPs`);
    assert.ok(depthwiseShare > 0.02 && depthwiseShare < 0.04, `depthwise share ${depthwiseShare}`);
  });

  it('the synchronous latency is a pure function of ops, bytes and the link', function () {
    const ms = serviceTimeMs(3.266e9, { inputBytes: 224 * 224 * 3 * 2, outputBytes: 2000, usb: 3 });
    assert.ok(Math.abs(1000 / ms / 42.1 - 1) < 0.15, `googlenet sync ${(1000 / ms).toFixed(1)} FPS vs 42.1`);
    // USB 2 moves the same 301 KB input about 7.5x slower
    const usb2 = serviceTimeMs(3.266e9, { inputBytes: 224 * 224 * 3 * 2, outputBytes: 2000, usb: 2 });
    assert.ok(usb2 - ms > 4, `USB 2 adds ${(usb2 - ms).toFixed(2)} ms`);
  });

  it('efficiency: googlenet uses about 32% of the 1 TOPS, depthwise-heavy mobilenet-ssd about 11%, never above 100%', function () {
    const ssd = PUBLISHED_FIGURES.find((f) => f.id === 'mobilenet-ssd')!;
    assert.ok(Math.abs(computeEfficiency(3.266e9) - 0.32) < 0.01);
    assert.ok(Math.abs(computeEfficiency(2.316e9, ssd.depthwiseShare) - 0.11) < 0.01);
    assert.ok(computeEfficiency(1e14) <= 1.0001, 'a huge network cannot beat the published peak');
    assert.ok(executorTimeMs(2e9) > executorTimeMs(1e9) && executorTimeMs(1e9, 0.1) > executorTimeMs(1e9, 0));
  });

  it('fitTiming is what the device uses', function () {
    const fit = fitTiming();
    assert.equal(fit.requestOverheadMs, DEFAULT_TIMING.requestOverheadMs);
    assert.equal(fit.depthwiseOpsPerSec, DEFAULT_TIMING.depthwiseOpsPerSec);
  });
});
