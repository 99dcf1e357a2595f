import { strict as assert } from 'assert';
import { planThroughput, sustainedEstimate } from '../../src/engine/planner/planner';
import { planModelFile, simBenchVerdict } from '../../src/engine/planner/plan-model';
import { DEFAULT_THERMAL } from '../../src/engine/devices/sim-ncs2/thermal-model';
import { buildMlp, buildMobileNetLike } from '../../src/engine/graph/builder';

const googlenet = { opsPerInference: 3.266e9, inputBytes: 224 * 224 * 3 * 2, outputBytes: 2000 };

describe('capacity planner (virtual time)', function () {
  it('one stick needs 3 or more requests in flight to use both executors', function () {
    const one = planThroughput(googlenet, { sticks: 1, usb: 3, requestsInFlight: 1 });
    const two = planThroughput(googlenet, { sticks: 1, usb: 3, requestsInFlight: 2 });
    const four = planThroughput(googlenet, { sticks: 1, usb: 3, requestsInFlight: 4 });
    assert.equal(one.bottleneck, 'requests in flight');
    assert.equal(four.bottleneck, 'stick executors');
    assert.ok(two.throughputFps > 1.7 * one.throughputFps);
    assert.ok(four.throughputFps >= two.throughputFps);
    // a second stick helps only with enough requests: 2 sticks x 2 requests = 1 stick x 2 (both half idle)
    const twoSticksTwoReq = planThroughput(googlenet, { sticks: 2, usb: 3, requestsInFlight: 2 });
    assert.ok(twoSticksTwoReq.throughputFps < 1.1 * two.throughputFps);
  });

  it('USB 3 sticks scale; on a shared USB 2 bus extra sticks add little for big inputs', function () {
    // squeezenet-sized work: 3.6 ms of stick time per request against 5 ms for its 301 KB on USB 2
    const squeezenet = { ...googlenet, opsPerInference: 0.785e9 };
    const fps = (sticks: number, usb: 2 | 3) => planThroughput(squeezenet, { sticks, usb }).throughputFps;
    assert.ok(fps(4, 3) > 3.9 * fps(1, 3));
    assert.ok(fps(2, 2) < 1.1 * fps(1, 2), `USB 2: 1 stick ${fps(1, 2).toFixed(0)}, 2 sticks ${fps(2, 2).toFixed(0)}`);
    assert.equal(planThroughput(squeezenet, { sticks: 2, usb: 2 }).bottleneck, 'shared usb bus');
    assert.equal(planThroughput(squeezenet, { sticks: 1, usb: 2 }).bottleneck, 'usb link');
  });

  it('latency percentiles come from the closed loop (Little: in flight = throughput x latency)', function () {
    const p = planThroughput(googlenet, { sticks: 2, usb: 3, requestsInFlight: 8 });
    assert.ok(Math.abs((p.throughputFps * p.latencyMs.mean) / 1000 / 8 - 1) < 0.02);
    assert.ok(p.latencyMs.p99 >= p.latencyMs.p50);
    assert.equal(p.simulated, true);
  });

  it('sustained load: a stick at full duty settles around its first guard and loses some throughput', function () {
    const s = sustainedEstimate(100, 1, DEFAULT_THERMAL);
    assert.equal(s.throttle, 'level 1 at times');
    assert.ok(s.throughputFps < 100 && s.throughputFps > 100 / (1 + DEFAULT_THERMAL.pause1));
    assert.equal(sustainedEstimate(100, 0.5, DEFAULT_THERMAL).throttle, 'none');
    const hot = { ...DEFAULT_THERMAL, ambientC: 50 };
    assert.equal(sustainedEstimate(100, 1, hot).throttle, 'level 2 at times');
  });

  it('rejects impossible inputs with what was expected', function () {
    assert.throws(() => planThroughput(googlenet, { sticks: 0, usb: 3 }), /sticks must be a positive integer/);
    assert.throws(() => planThroughput(googlenet, { sticks: 1, usb: 4 as 3 }), /usb must be 2 or 3/);
    assert.throws(() => planThroughput({ ...googlenet, inputBytes: NaN }, { sticks: 1, usb: 3 }), /inputBytes/);
  });

  it('plans a model file: counts its ops and depthwise share, and says what one more stick adds', async function () {
    const mobilenet = await planModelFile(buildMobileNetLike({ inputSize: 96, batch: 1 }), { sticks: 2, usb: 3 });
    assert.ok(mobilenet.model.depthwiseShare > 0.02, `depthwise share ${mobilenet.model.depthwiseShare}`);
    assert.equal(mobilenet.model.inputBytes, 3 * 96 * 96 * 2, 'float input travels as FP16');
    assert.ok(mobilenet.oneMoreStickGain > 0.4, 'executor-bound: a third stick adds about half');
    assert.match(mobilenet.summary, /2 simulated sticks on USB 3: .* inferences\/s/);
    const mlp = await planModelFile(buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, batch: 1 }), { sticks: 1, usb: 2 });
    assert.equal(mlp.model.depthwiseShare, 0);
    await assert.rejects(planModelFile('/nonexistent/model.onnx', { sticks: 1, usb: 3 }), /cannot read model file/);
  });

  it('a bench verdict names the host as the bottleneck only when it was late and the run fell short', function () {
    const plan = planThroughput(googlenet, { sticks: 4, usb: 3 });
    const short = simBenchVerdict(0.6 * plan.throughputFps, plan, [{ hostLateShare: 0.02 }, { hostLateShare: 0.4 }]);
    assert.equal(short.hostLimited, true);
    assert.match(short.message, /^the host, not the simulated sticks, is the bottleneck: .* 60% of what the planner predicts .* 40% of results/);
    const fine = simBenchVerdict(0.99 * plan.throughputFps, plan, [{ hostLateShare: 0.2 }]);
    assert.equal(fine.hostLimited, false, 'late results absorbed by requests in flight do not cost throughput');
    assert.match(fine.message, /the host kept up/);
  });
});
