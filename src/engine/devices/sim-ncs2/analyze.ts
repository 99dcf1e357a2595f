/**
 * What the timing model needs to know about a network: ops per inference, the depthwise share
 * of them, and the bytes one inference moves over USB. Shapes come from one probe run
 * (op-count.ts's probeShapes), done in a short-lived worker because onnxruntime's run is
 * synchronous and a big model would stall the event loop.
 */
import { Worker } from 'worker_threads';
import * as path from 'path';
import { countOps, probeShapes } from '../../graph/op-count';
import { parseModel, readModelInfo } from '../../graph/model-info';
import { toNumber, type IGraphProto } from '../../graph/onnx';
import { wireBytesPerElement } from './timing';
import { prepareFp16Model } from './fp16';
import { ModelLoadError } from '../../errors';
import { createRuntimeFlags, forgetRuntimeFlags } from '../cpu/runtime-guard';

export interface ModelTimingProfile {
  /** Ops of one inference at batch 1 (2 per MAC). */
  ops: number;
  depthwiseOps: number;
  depthwiseShare: number;
  /** Op types the counter has no rule for (they count 0, so `ops` is a lower bound). */
  unknownOps: string[];
  /** Bytes one inference's inputs and outputs occupy on the USB link. */
  inputBytes: number;
  outputBytes: number;
  /** Per output: bytes per sample on the wire (for a batch, times the batch). */
  outputWireBytes: Record<string, number>;
}

const numel = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

export async function analyzeModel(bytes: Uint8Array): Promise<ModelTimingProfile> {
  const shapes = await probeShapes(bytes);
  const count = countOps(bytes, shapes);
  const graph = parseModel(bytes).graph as IGraphProto;
  let depthwiseOps = 0;
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Conv') continue;
    const group = toNumber((node.attribute ?? []).find((a) => a.name === 'group')?.i ?? 1);
    const w = shapes.get(node.input?.[1] ?? '');
    const y = shapes.get(node.output?.[0] ?? '');
    // Depthwise: one input channel per group (W is [M, 1, k...]); other grouped convs are dense work.
    if (group <= 1 || !w || !y || w[1] !== 1) continue;
    depthwiseOps += 2 * numel(y) * numel(w.slice(1)) + (node.input?.[2] ? numel(y) : 0);
  }
  const info = readModelInfo(bytes);
  let inputBytes = 0;
  for (const i of info.inputs) inputBytes += numel(shapes.get(i.name) ?? []) * wireBytesPerElement(i.type);
  const outputWireBytes: Record<string, number> = {};
  let outputBytes = 0;
  for (const o of info.outputs) {
    const b = numel(shapes.get(o.name) ?? []) * wireBytesPerElement(o.type);
    outputWireBytes[o.name] = b;
    outputBytes += b;
  }
  return {
    ops: count.total,
    depthwiseOps,
    depthwiseShare: count.total > 0 ? Math.min(1, depthwiseOps / count.total) : 0,
    unknownOps: count.unknownOps,
    inputBytes,
    outputBytes,
    outputWireBytes,
  };
}

export interface PreparedModel {
  /** FP16-rounded model for the host runtime (fp16.ts). */
  prepared: Uint8Array;
  profile: ModelTimingProfile;
}

type WorkerReply = { ok: true; profile: ModelTimingProfile; prepared?: Uint8Array } | { ok: false; message: string; refused?: boolean };

function runWorker(bytes: Uint8Array, prepare: boolean, where: string): Promise<WorkerReply & { ok: true }> {
  return new Promise((resolve, reject) => {
    const runtimeFlags = createRuntimeFlags();
    const worker = new Worker(path.join(__dirname, 'analyze-worker.js'), { workerData: { bytes, prepare, where, runtimeFlags } });
    worker.once('exit', () => forgetRuntimeFlags(runtimeFlags));
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      void worker.terminate();
    };
    worker.once('message', (msg: WorkerReply) =>
      settle(() => (msg.ok ? resolve(msg) : reject(msg.refused ? new ModelLoadError(msg.message) : new Error(msg.message)))),
    );
    worker.once('error', (err) => settle(() => reject(err)));
    worker.once('exit', (code) => settle(() => reject(new Error(`model analysis worker exited with code ${code}`))));
  });
}

/** analyzeModel in a worker thread, so the caller's event loop stays free. */
export async function analyzeModelOffThread(bytes: Uint8Array): Promise<ModelTimingProfile> {
  return (await runWorker(bytes, false, 'the model')).profile;
}

/**
 * FP16 preparation and analysis together in a worker: rounding every weight of a big model is a
 * JavaScript loop of tens of milliseconds that must not run on Node-RED's event loop. An INT8 graph
 * rejects with ModelLoadError (the stick's message).
 */
export async function prepareModelOffThread(bytes: Uint8Array, where: string): Promise<PreparedModel> {
  const reply = await runWorker(bytes, true, where);
  return { prepared: reply.prepared!, profile: reply.profile };
}

/** What the worker runs. */
export async function prepareAndAnalyze(bytes: Uint8Array, prepare: boolean, where: string): Promise<WorkerReply> {
  let prepared: Uint8Array | undefined;
  if (prepare) {
    try {
      prepared = prepareFp16Model(bytes, where);
    } catch (err) {
      return { ok: false, message: (err as Error).message, refused: err instanceof ModelLoadError };
    }
  }
  return { ok: true, profile: await analyzeModel(bytes), prepared };
}
