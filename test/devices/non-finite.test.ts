import { strict as assert } from 'assert';
import { CpuDevice } from '../../src/engine/devices/cpu/cpu-device';
import { SimNcs2Device } from '../../src/engine/devices/sim-ncs2';
import { StickRegistry } from '../../src/engine/devices/usb/registry';
import { firstNonFinite, nonFiniteProblem } from '../../src/engine/devices/non-finite';
import { InferenceEngine } from '../../src/engine/pipeline/engine';
import { classify } from '../../src/engine/io/postprocess';
import { buildMlp } from '../../src/engine/graph/builder';
import { DeviceError, EngineError, InputError } from '../../src/engine/errors';

const model = buildMlp({ inputSize: 8, hidden: [16], outputSize: 3, seed: 11 });
const filled = (value: number, at?: number) => {
  const data = new Float32Array(8).fill(0.5);
  if (at === undefined) data.fill(value);
  else data[at] = value;
  return { name: 'input', type: 'float32' as const, dims: [1, 8], data };
};

describe('non-finite inputs and outputs', function () {
  this.timeout(60_000);

  it('finds NaN and ±Infinity in float32, float64 and raw float16 words, and nothing in integer types', function () {
    assert.equal(firstNonFinite('float32', Float32Array.of(1, 2, NaN, Infinity)), 2);
    assert.equal(firstNonFinite('float64', Float64Array.of(0, -Infinity)), 1);
    assert.equal(firstNonFinite('float32', Float32Array.of(1, NaN, 3), 2, 1), -1, 'only the range asked for');
    assert.equal(firstNonFinite('float16', Uint16Array.of(0x3c00, 0x7c00)), 1, '0x7c00 is +Infinity');
    assert.equal(firstNonFinite('float16', Uint16Array.of(0xfe00)), 0, '0xfe00 is a NaN');
    assert.equal(firstNonFinite('float16', Uint16Array.of(0x7bff)), -1, '65504 is finite');
    assert.equal(firstNonFinite('int32', Int32Array.of(-1, 0x7fffffff)), -1);
    assert.equal(nonFiniteProblem('input', 'x', 'float32', Float32Array.of(1, 2)), undefined);
    assert.equal(
      nonFiniteProblem('output', 'scores', 'float32', Float32Array.of(1, -Infinity, NaN)),
      "output 'scores' holds 2 non-finite values of 3 (the first, -Infinity, at index 1): the model produced no usable answer; check its weights and the input",
    );
  });

  describe('on the cpu device', function () {
    let device: CpuDevice;
    before(async function () {
      device = new CpuDevice({ workers: 1, threadsPerWorker: 1 });
      await device.load({ key: 'strict', model, session: {} });
      await device.load({ key: 'lenient', model: buildMlp({ inputSize: 8, hidden: [16], outputSize: 3, seed: 12 }), session: { nonFinite: 'allow' } });
    });
    after(async function () {
      await device.close();
    });

    for (const [label, value] of [['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]] as const) {
      it(`refuses a ${label} input with an InputError naming the input (not a device failure to retry)`, async function () {
        await assert.rejects(device.run({ graphKey: 'strict', inputs: [filled(value, 5)] }), (err: Error) => {
          assert.ok(err instanceof InputError && !(err instanceof DeviceError), `${err.name}: ${err.message}`);
          assert.match(err.message, new RegExp(`input 'input' holds 1 non-finite value of 8 \\(the first, ${label.replace('-', '\\-')}, at index 5\\)`));
          return true;
        });
      });
    }

    it('fails a finite input whose output overflows to Infinity or NaN, naming the output', async function () {
      await assert.rejects(device.run({ graphKey: 'strict', inputs: [filled(3e38)] }), (err: Error) => {
        assert.ok(err instanceof EngineError && err.code === 'OUTPUT_NOT_FINITE', `${err.name}: ${err.message}`);
        assert.match(err.message, /output 'output' holds \d non-finite values? of 3/);
        return true;
      });
    });

    it("passes non-finite values on for a graph loaded with nonFinite 'allow'", async function () {
      const result = await device.run({ graphKey: 'lenient', inputs: [filled(NaN, 0)] });
      assert.ok(Array.from(result.outputs.output.data as Float32Array).some((v) => Number.isNaN(v)));
    });

    it('still answers finite requests after refusing bad ones', async function () {
      const result = await device.run({ graphKey: 'strict', inputs: [filled(0.25)] });
      assert.ok(Array.from(result.outputs.output.data as Float32Array).every(Number.isFinite));
    });
  });

  it('the engine fails a NaN submission with the input named, without retrying it elsewhere', async function () {
    const engine = new InferenceEngine({ devices: [new CpuDevice({ id: 'a', workers: 1, threadsPerWorker: 1 }), new CpuDevice({ id: 'b', workers: 1, threadsPerWorker: 1 })] });
    try {
      const graph = await engine.loadGraph(model);
      const { name: _name, ...input } = filled(NaN, 2);
      await assert.rejects(engine.submit(graph, { input }), /input 'input' holds 1 non-finite value/);
      assert.equal(engine.getStats().graphs[graph.id].retried, 0);
    } finally {
      await engine.close();
    }
  });

  it('a simulated stick refuses a NaN input the same way, and passes it with nonFinite allow', async function () {
    const stick = new SimNcs2Device({ id: 'sim-nan', registry: new StickRegistry() });
    try {
      await stick.load({ key: 'strict', model, session: {} });
      await stick.load({ key: 'lenient', model, session: { nonFinite: 'allow' } });
      await assert.rejects(stick.run({ graphKey: 'strict', inputs: [filled(NaN, 1)] }), (err: Error) => err instanceof InputError && /input 'input' holds 1 non-finite value/.test(err.message));
      const passed = await stick.run({ graphKey: 'lenient', inputs: [filled(NaN, 1)] });
      assert.ok(Array.from(passed.outputs.output.data as Float32Array).some((v) => Number.isNaN(v)));
    } finally {
      await stick.close();
    }
  });

  it('classification refuses a NaN score instead of answering class 0', function () {
    const outputs = { logits: { type: 'float32' as const, dims: [2, 3], data: Float32Array.of(0.1, 0.7, 0.2, NaN, NaN, NaN) } };
    assert.throws(() => classify(outputs), /output 'logits' holds a non-finite score \(NaN\) for class 0 of row 1/);
    assert.equal(classify({ logits: { ...outputs.logits, dims: [1, 3], data: outputs.logits.data.subarray(0, 3) } })[0].index, 1);
  });
});
