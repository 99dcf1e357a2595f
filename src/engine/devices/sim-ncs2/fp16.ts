/**
 * FP16 precision for the simulated stick. The Myriad X computes in FP16 only, and OpenVINO
 * converts an FP32 network's weights to FP16; the simulator reproduces the rounding a user sees in
 * results without needing FP16 kernels on the host:
 * - float32 weights (initializers, Constant tensors, also in subgraphs) are replaced by the nearest
 *   FP16 values, still stored as float32;
 * - every float32 graph input passes through Cast(float16) -> Cast(float32) before use, and every
 *   float32 output likewise before it leaves (the stick returns FP16 results).
 * Intermediate activations stay float32 on the host: the simulator is closer to the stick than
 * the FP32 CPU run, not bit-exact with it.
 */
import { DataType, encodeModel, makeNode, type IGraphProto, type ITensorProto } from '../../graph/onnx';
import { parseModel, readModelInfo } from '../../graph/model-info';
import { ModelLoadError } from '../../errors';
// One float16 conversion for the whole package: the optimizer's (round to nearest even, subnormals, overflow to infinity).
import { toHalfBits, fromHalfBits as halfBitsToFloat } from '../../graph/optimizer/half';

export { toHalfBits, halfBitsToFloat };

export function roundToFp16(v: number): number {
  return halfBitsToFloat(toHalfBits(v));
}

function roundTensor(t: ITensorProto): void {
  if (t.dataType !== DataType.FLOAT) return;
  if (t.rawData && t.rawData.length > 0) {
    // Decoded bytes may share memory with the caller's model (protobufjs subarrays): copy first.
    const raw = new Uint8Array(t.rawData);
    t.rawData = raw;
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i + 4 <= raw.byteLength; i += 4) view.setFloat32(i, roundToFp16(view.getFloat32(i, true)), true);
  } else if (t.floatData && t.floatData.length > 0) {
    t.floatData = t.floatData.map(roundToFp16);
  }
}

function roundGraphWeights(graph: IGraphProto): void {
  for (const t of graph.initializer ?? []) roundTensor(t);
  for (const node of graph.node ?? []) {
    for (const a of node.attribute ?? []) {
      if (a.t) roundTensor(a.t);
      for (const t of a.tensors ?? []) roundTensor(t);
      if (a.g) roundGraphWeights(a.g);
      for (const g of a.graphs ?? []) roundGraphWeights(g);
    }
  }
}

/** The message a real stick's plugin gives for a quantized network, with what to do about it. */
export function int8RefusalMessage(where: string, opTypes: string[]): string {
  return (
    `Unsupported Layer Type FakeQuantize: ${where} is an INT8 (quantized) graph (${opTypes.join(', ')}), ` +
    'and the NCS2 (Myriad X) runs FP16 only; load the FP32 or FP16 model instead (the stick converts FP32 to FP16)'
  );
}

const SUFFIX = '__ncs2';

/**
 * Returns the model with FP16-rounded weights and FP16 round trips on its float inputs and outputs.
 * Throws ModelLoadError for INT8 graphs, with the stick's own message.
 */
export function prepareFp16Model(bytes: Uint8Array, where = 'the model'): Uint8Array {
  const info = readModelInfo(bytes);
  if (info.precision === 'int8') {
    const quantOps = Object.keys(info.opTypes).filter((op) => /Quantize|QLinear|Integer/.test(op));
    throw new ModelLoadError(int8RefusalMessage(where, quantOps));
  }
  const model = parseModel(bytes);
  const graph = model.graph as IGraphProto;
  roundGraphWeights(graph);
  const nodes = graph.node ?? [];
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const head = [];
  for (const input of graph.input ?? []) {
    const name = input.name ?? '';
    if (initNames.has(name) || input.type?.tensorType?.elemType !== DataType.FLOAT) continue;
    const half = `${name}${SUFFIX}_fp16`;
    const back = `${name}${SUFFIX}_in`;
    for (const node of nodes) node.input = (node.input ?? []).map((x) => (x === name ? back : x));
    head.push(makeNode('Cast', [name], [half], { to: { int: DataType.FLOAT16 } }, half));
    head.push(makeNode('Cast', [half], [back], { to: { int: DataType.FLOAT } }, back));
  }
  const tail = [];
  for (const output of graph.output ?? []) {
    const name = output.name ?? '';
    if (output.type?.tensorType?.elemType !== DataType.FLOAT) continue;
    const producers = nodes.filter((n) => (n.output ?? []).includes(name));
    if (producers.length === 0) continue; // an input passed straight through was rounded on the way in
    const raw = `${name}${SUFFIX}_raw`;
    const half = `${name}${SUFFIX}_out16`;
    for (const node of nodes) {
      node.output = (node.output ?? []).map((x) => (x === name ? raw : x));
      node.input = (node.input ?? []).map((x) => (x === name ? raw : x));
    }
    tail.push(makeNode('Cast', [raw], [half], { to: { int: DataType.FLOAT16 } }, half));
    tail.push(makeNode('Cast', [half], [name], { to: { int: DataType.FLOAT } }, `${name}${SUFFIX}_out`));
  }
  graph.node = [...head, ...nodes, ...tail];
  return encodeModel(model);
}
