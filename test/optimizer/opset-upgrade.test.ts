/**
 * INT8 on models exported with old opsets (PaddleOCR's are 9 and 11): the optimizer raises the
 * opset to 13 as a re-export would, rewriting attribute forms as inputs, and refuses by name the
 * operators whose meaning changed.
 */
import { strict as assert } from 'assert';
import * as ort from 'onnxruntime-node';
import { DataType, IGraphProto, decodeModel, encodeModel, makeFloatTensor, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';
import { UnsupportedModelError, optimizeModel } from '../../src/engine/graph/optimizer';
import { upgradeOpset } from '../../src/engine/graph/optimizer/opset-upgrade';
import { probeTensors } from '../../src/engine/graph/optimizer/probe';
import { runOnce, syntheticImages } from './helpers';

/** Conv -> Clip(0, 6) -> Slice (channels 1..2) -> Unsqueeze -> Squeeze -> Softmax, at opset 9 and IR version 4. */
function opset9Model(softmaxAxis = 3, extra?: 'upsample'): Uint8Array {
  const w = makeFloatTensor('w', [4, 1, 3, 3], Array.from({ length: 36 }, (_, i) => Math.cos(i) * 0.5));
  const nodes = [
    makeNode('Conv', ['x', 'w'], ['c'], { pads: { ints: [1, 1, 1, 1] } }),
    makeNode('Clip', ['c'], ['k'], { min: { float: 0 }, max: { float: 6 } }),
    makeNode('Slice', ['k'], ['s'], { axes: { ints: [1] }, starts: { ints: [1] }, ends: { ints: [3] } }),
    makeNode('Unsqueeze', ['s'], ['u'], { axes: { ints: [0] } }),
    makeNode('Squeeze', ['u'], ['q'], { axes: { ints: [0] } }),
    makeNode('Softmax', ['q'], [extra ? 'p' : 'y'], { axis: { int: softmaxAxis } }),
  ];
  if (extra === 'upsample') nodes.push(makeNode('Upsample', ['p', 'scales'], ['y'], { mode: { string: 'nearest' } }));
  const graph: IGraphProto = {
    name: 'old',
    node: nodes,
    initializer: [w, ...(extra === 'upsample' ? [makeFloatTensor('scales', [4], [1, 1, 2, 2])] : [])],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 1, 8, 8])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 2, 8, 8])],
  };
  return encodeModel(makeModel(graph, 9, 4));
}

describe('optimizer: opset upgrade for INT8', function () {
  this.timeout(60000);
  const x = new ort.Tensor('float32', syntheticImages(2, 1, 8)[0].map((v) => v * 4 - 1), [1, 1, 8, 8]);

  it('carries an opset-9 model to opset 13 with the same outputs (Clip, Slice, Squeeze, Unsqueeze rewritten)', async function () {
    const original = opset9Model();
    const model = decodeModel(original);
    const meta = await probeTensors(model, { x: [1, 1, 8, 8] });
    const up = upgradeOpset(model, 13, meta, 'INT8 needs opset >= 10');
    assert.deepEqual(up, { from: 9, to: 13, rewritten: { Clip: 1, Slice: 1, Unsqueeze: 1, Squeeze: 1 } });
    const nodes = model.graph!.node!;
    assert.ok(nodes.every((n) => (n.attribute ?? []).every((a) => !['min', 'max', 'starts', 'ends', 'axes'].includes(a.name ?? ''))));
    const before = (await runOnce(original, { x }, 'disabled')).y.data as Float32Array;
    const after = (await runOnce(encodeModel(model), { x }, 'disabled')).y.data as Float32Array;
    assert.deepEqual(Array.from(after), Array.from(before));
  });

  it('quantizes such a model per channel, saying that the opset was raised', async function () {
    const { bytes, report } = await optimizeModel(opset9Model(), { precision: 'int8', calibration: syntheticImages(4, 1, 8) });
    assert.equal(report.opset, 13);
    assert.ok(report.notes.some((n) => /opset 9 raised to 13 for INT8 \(attribute forms rewritten as inputs: Clip x1, Slice x1, Unsqueeze x1, Squeeze x1\)/.test(n)), report.notes.join('\n'));
    assert.ok(report.quantized.some((q) => q.op === 'Conv'));
    const y = (await runOnce(bytes, { x })).y.data as Float32Array;
    const ref = (await runOnce(opset9Model(), { x })).y.data as Float32Array;
    const worst = Math.max(...Array.from(y, (v, i) => Math.abs(v - ref[i])));
    assert.ok(worst < 0.05, `int8 softmax outputs differ by up to ${worst}`);
  });

  it('refuses, by name, operators whose meaning changed, and leaves the model as it was', async function () {
    const calibration = syntheticImages(2, 1, 8);
    await assert.rejects(optimizeModel(opset9Model(1), { precision: 'int8', calibration }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError);
      assert.match(err.message, /^INT8 needs opset >= 10 \(QuantizeLinear\); the model imports opset 9, and these operators cannot be carried to opset 13 with their meaning kept: Softmax \(axis 1 is not the last\); re-export the model with opset 13 or newer/);
      assert.deepEqual(err.items, ['Softmax (axis 1 is not the last)']);
      return true;
    });
    await assert.rejects(optimizeModel(opset9Model(3, 'upsample'), { precision: 'int8', calibration, perChannel: false }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError);
      assert.match(err.message, /^INT8 needs opset >= 10 \(QuantizeLinear\); .*: Upsample;/);
      assert.deepEqual(err.items, ['Upsample']);
      return true;
    });
    const model = decodeModel(opset9Model(1));
    const meta = await probeTensors(model, { x: [1, 1, 8, 8] });
    assert.throws(() => upgradeOpset(model, 13, meta, 'why'), UnsupportedModelError);
    assert.equal(Number(model.opsetImport![0].version), 9);
    assert.equal(model.graph!.node!.find((n) => n.opType === 'Clip')!.input!.length, 1, 'nothing rewritten');
  });
});
