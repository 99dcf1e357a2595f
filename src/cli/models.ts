/**
 * Models the CLI and the benchmarks run: the built-in generated ones (so `ncs2 bench` works on a
 * fresh clone, with no download) or a user's .onnx file, and synthetic inputs that fit them.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { buildMlp, buildMobileNetLike, optimizeModel, readModelInfo, ModelFormatError, ModelLoadError } from '../engine';
import type { ModelInfo, Feeds, TypedArray } from '../engine';

export interface BenchModel {
  /** Short name for tables ('mlp', 'cnn' or the file name). */
  name: string;
  description: string;
  /** 'built-in' or the file path. */
  source: string;
  bytes: Uint8Array;
  info: ModelInfo;
}

export const BUILTIN_MODELS: Record<string, { description: string; build(): Uint8Array }> = {
  mlp: {
    description: '784-128-10 MLP (Gemm+Relu, fp32, generated)',
    build: () => buildMlp({ inputSize: 784, hidden: [128], outputSize: 10 }),
  },
  cnn: {
    description: 'MobileNetV2-like CNN, 224x224x3 input, 1000 classes (fp32, generated)',
    build: () => buildMobileNetLike({ inputSize: 224 }),
  },
};

/** Built in but made at run time (quantizing takes a few seconds): the CNN in int8. */
export const INT8_CNN = 'cnn-int8';

/**
 * The built-in CNN quantized by the engine's optimizer (QDQ, per-channel weights, minmax
 * calibration on 8 synthetic inputs): a speed case with generated weights, not an accuracy claim.
 */
export async function int8Cnn(fp32?: BenchModel): Promise<BenchModel> {
  const source = fp32 ?? (await resolveModel('cnn'));
  const dims = resolveInputDims(source.info, 1);
  const input = source.info.inputs[0];
  const calibration = Array.from({ length: 8 }, () => syntheticFeeds(source.info, dims)[input.name].data as Float32Array);
  const { bytes } = await optimizeModel(source.bytes, { precision: 'int8', calibration });
  return { name: INT8_CNN, description: 'MobileNetV2-like CNN 224x224, int8 QDQ made by ncs2 optimize (generated weights)', source: 'built-in', bytes, info: readModelInfo(bytes) };
}

/** A built-in name or a path to an .onnx file; errors say which of the two was expected. */
export async function resolveModel(spec: string): Promise<BenchModel> {
  if (spec === INT8_CNN) return int8Cnn();
  const builtin = BUILTIN_MODELS[spec];
  if (builtin) {
    const bytes = builtin.build();
    return { name: spec, description: builtin.description, source: 'built-in', bytes, info: readModelInfo(bytes) };
  }
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(spec);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ModelLoadError(`cannot read model '${spec}': ${why}; expected a path to an .onnx file or one of the built-in models: ${[...Object.keys(BUILTIN_MODELS), INT8_CNN].join(', ')}`);
  }
  let info: ModelInfo;
  try {
    info = readModelInfo(bytes);
  } catch (err) {
    if (err instanceof ModelFormatError) throw new ModelLoadError(`cannot load model '${spec}': ${err.message}`);
    throw err;
  }
  return { name: path.basename(spec), description: `${spec} (${info.precision}, opset ${info.opsetVersion})`, source: spec, bytes, info };
}

/**
 * Concrete dims for every input: a symbolic or unknown first dim is the batch; other symbolic
 * dims must be given (`shapes`), because guessing them (say 1 for an image side) would measure a
 * different workload than the user's.
 */
export function resolveInputDims(info: ModelInfo, batch: number, shapes: Record<string, number[]> = {}): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const unknown = Object.keys(shapes).filter((n) => !info.inputs.some((i) => i.name === n));
  if (unknown.length) throw new ModelLoadError(`--shape names unknown input ${unknown.join(', ')}; the model's inputs are ${info.inputs.map((i) => i.name).join(', ')}`);
  for (const input of info.inputs) {
    const given = shapes[input.name];
    if (given) {
      if (given.length !== input.dims.length) {
        throw new ModelLoadError(`--shape ${input.name}: the model declares ${input.dims.length} dims [${input.dims.join(', ')}], got ${given.length} [${given.join(', ')}]`);
      }
      out[input.name] = given;
      continue;
    }
    out[input.name] = input.dims.map((d, i) => {
      if (typeof d === 'number' && d > 0) {
        if (i === 0 && batch !== 1 && d !== batch) {
          throw new ModelLoadError(`input '${input.name}' has a fixed batch of ${d} [${input.dims.join(', ')}]; --batch ${batch} needs a model with a symbolic batch dim`);
        }
        return d;
      }
      if (i === 0) return batch;
      throw new ModelLoadError(`input '${input.name}' has a symbolic dim '${d}' at position ${i} [${input.dims.join(', ')}]; give its size with --shape ${input.name}=${input.dims.map((x, j) => (j === 0 ? batch : typeof x === 'number' && x > 0 ? x : '?')).join(',')}`);
    });
  }
  return out;
}

/** Samples per task: the first input's first dim. */
export function samplesPerTask(dims: Record<string, number[]>, info: ModelInfo): number {
  return dims[info.inputs[0]?.name ?? '']?.[0] ?? 1;
}

/**
 * Deterministic inputs: floats in [0, 1) (images, probabilities), integers 0 (always a valid
 * index for Gather-like ops). The values do not change the work a dense model does.
 */
export function syntheticFeeds(info: ModelInfo, dims: Record<string, number[]>): Feeds {
  const feeds: Feeds = {};
  let s = 0x9e3779b9;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (const input of info.inputs) {
    const d = dims[input.name];
    const n = d.reduce((a, b) => a * b, 1);
    let data: TypedArray;
    switch (input.type) {
      case 'float32':
        data = Float32Array.from({ length: n }, rand);
        break;
      case 'float64':
        data = Float64Array.from({ length: n }, rand);
        break;
      case 'float16':
        data = new Uint16Array(n).fill(0x3800); // 0.5 as IEEE half bits
        break;
      case 'int8':
        data = new Int8Array(n);
        break;
      case 'uint8':
      case 'bool':
        data = new Uint8Array(n);
        break;
      case 'int16':
        data = new Int16Array(n);
        break;
      case 'uint16':
        data = new Uint16Array(n);
        break;
      case 'int32':
        data = new Int32Array(n);
        break;
      case 'int64':
        data = new BigInt64Array(n);
        break;
      default:
        throw new ModelLoadError(`input '${input.name}' is of type ${input.type}; ncs2 bench can only synthesize numeric inputs`);
    }
    feeds[input.name] = { type: input.type, dims: d, data };
  }
  return feeds;
}
