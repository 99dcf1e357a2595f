/**
 * Calibration data from the sources a user has at hand: a folder of images, a .npy file,
 * or arrays in memory. Everything is checked against the model input's shape up front, so
 * a wrong shape fails with the expected shape named instead of deep inside onnxruntime.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { TensorInfo } from '../model-info';
import { decodeImage, resolveImageSpec, writePixels, type PreprocessOptions } from '../../io/preprocess';
import { CalibrationError } from './errors';
import { NpyFormatError, readNpy } from './npy';
import type { CalibrationInput } from './calibrate';

/** One sample or several concatenated, in the model input's layout and float32. */
export type CalibrationArray = Float32Array | { data: Float32Array; dims: number[] };

/** A folder of images or a .npy file (path), or arrays in memory. */
export type CalibrationSource = string | CalibrationArray[];

/** How calibration images become tensors; the same meaning as the graph node's preprocessing. */
export type ImageCalibrationOptions = Pick<PreprocessOptions, 'width' | 'height' | 'scale' | 'mean' | 'std' | 'channelOrder' | 'resize' | 'layout'>;

export interface LoadCalibrationOptions {
  image?: ImageCalibrationOptions;
  /** Use at most this many samples (the first ones, in file-name order for folders). */
  maxSamples?: number;
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export function shapeLabel(dims: Array<number | string>): string {
  return `[${dims.join(', ')}]`;
}

function expected(input: TensorInfo): string {
  const dims = input.dims.map((d, i) => (i === 0 ? 'N' : d));
  const fixed = input.dims.slice(1).every((d) => typeof d === 'number');
  const per = fixed ? ` (${(input.dims.slice(1) as number[]).reduce((a, b) => a * b, 1)} values per sample)` : '';
  return `input '${input.name}' expects ${shapeLabel(dims)}${per}`;
}

/** Per-sample dims of a concrete sample shape, checked against the model input's fixed dims. */
function checkSampleDims(input: TensorInfo, sample: number[], what: string): number[] {
  const model = input.dims.slice(1);
  const ok = sample.length === model.length && model.every((d, i) => typeof d !== 'number' || d === sample[i]);
  if (!ok || sample.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new CalibrationError(`calibration ${what} has sample shape ${shapeLabel(sample)}; ${expected(input)}`);
  }
  return sample;
}

function limit(count: number, options: LoadCalibrationOptions): number {
  const max = options.maxSamples;
  if (max === undefined) return count;
  if (!Number.isInteger(max) || max < 1) throw new CalibrationError(`maxSamples must be a positive integer, got ${max}`);
  return Math.min(count, max);
}

export async function loadCalibrationData(source: CalibrationSource, input: TensorInfo, options: LoadCalibrationOptions = {}): Promise<CalibrationInput> {
  if (input.type !== 'float32') {
    throw new CalibrationError(`calibration feeds float32 model inputs; input '${input.name}' is ${input.type}`);
  }
  if (typeof source === 'string') {
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(source);
    } catch {
      throw new CalibrationError(`calibration source ${source} does not exist; give a folder of images or a .npy file`);
    }
    if (stat.isDirectory()) return loadImages(source, input, options);
    if (source.toLowerCase().endsWith('.npy')) return loadNpy(source, input, options);
    throw new CalibrationError(`calibration source ${source} is neither a folder of images nor a .npy file`);
  }
  if (!Array.isArray(source) || source.length === 0) throw new CalibrationError('calibration data is empty; give at least one sample');
  return fromArrays(source, input, options);
}

function fromArrays(arrays: CalibrationArray[], input: TensorInfo, options: LoadCalibrationOptions): CalibrationInput {
  let sampleDims: number[] | undefined;
  const parts: Float32Array[] = [];
  arrays.forEach((a, i) => {
    let dims: number[];
    let data: Float32Array;
    if (a instanceof Float32Array) {
      const fixed = input.dims.slice(1);
      if (!fixed.every((d) => typeof d === 'number')) {
        throw new CalibrationError(`calibration sample ${i} is a bare Float32Array, but ${expected(input)} with dynamic dims: pass {data, dims} objects or a .npy file`);
      }
      const size = (fixed as number[]).reduce((x, y) => x * y, 1);
      if (a.length === 0 || a.length % size !== 0) {
        throw new CalibrationError(`calibration sample ${i} has ${a.length} values; ${expected(input)}: give a multiple of ${size}`);
      }
      dims = [a.length / size, ...(fixed as number[])];
      data = a;
    } else if (a && a.data instanceof Float32Array && Array.isArray(a.dims)) {
      dims = a.dims;
      data = a.data;
      if (dims.reduce((x, y) => x * y, 1) !== data.length) {
        throw new CalibrationError(`calibration sample ${i}: dims ${shapeLabel(dims)} need ${dims.reduce((x, y) => x * y, 1)} values, data has ${data.length}`);
      }
    } else {
      throw new CalibrationError(`calibration sample ${i} is not a Float32Array or {data: Float32Array, dims}`);
    }
    const sd = checkSampleDims(input, dims.length === input.dims.length ? dims.slice(1) : dims, `sample ${i}`);
    if (sampleDims && shapeLabel(sampleDims) !== shapeLabel(sd)) {
      throw new CalibrationError(`calibration samples differ in shape: ${shapeLabel(sampleDims)} and ${shapeLabel(sd)} (sample ${i}); ${expected(input)}`);
    }
    sampleDims = sd;
    parts.push(data);
  });
  const dims = sampleDims as number[];
  const size = dims.reduce((a, b) => a * b, 1);
  const total = parts.reduce((a, p) => a + p.length / size, 0);
  const count = limit(total, options);
  const data = new Float32Array(count * size);
  let at = 0;
  for (const p of parts) {
    if (at >= data.length) break;
    const take = p.subarray(0, Math.min(p.length, data.length - at));
    data.set(take, at);
    at += take.length;
  }
  return { name: input.name, data, sampleDims: dims, count };
}

async function loadNpy(file: string, input: TensorInfo, options: LoadCalibrationOptions): Promise<CalibrationInput> {
  let arr;
  try {
    arr = readNpy(await fs.promises.readFile(file), path.basename(file));
  } catch (err) {
    if (err instanceof NpyFormatError) throw new CalibrationError(err.message, { cause: err });
    throw err;
  }
  // [N, ...sample] or a single sample without the batch axis.
  const batched = arr.shape.length === input.dims.length;
  const single = arr.shape.length === input.dims.length - 1;
  if (!batched && !single) {
    throw new CalibrationError(`calibration file ${path.basename(file)} has shape ${shapeLabel(arr.shape)}; ${expected(input)}`);
  }
  const sampleDims = checkSampleDims(input, batched ? arr.shape.slice(1) : arr.shape, `file ${path.basename(file)} (shape ${shapeLabel(arr.shape)})`);
  const total = batched ? arr.shape[0] : 1;
  if (total === 0) throw new CalibrationError(`calibration file ${path.basename(file)} holds no samples`);
  const count = limit(total, options);
  const size = sampleDims.reduce((a, b) => a * b, 1);
  return { name: input.name, data: arr.data.subarray(0, count * size), sampleDims, count };
}

async function loadImages(dir: string, input: TensorInfo, options: LoadCalibrationOptions): Promise<CalibrationInput> {
  const files = (await fs.promises.readdir(dir)).filter((f) => IMAGE_EXTENSIONS.has(path.extname(f).toLowerCase())).sort();
  if (files.length === 0) throw new CalibrationError(`calibration folder ${dir} holds no .jpg, .png or .webp images`);
  let spec;
  try {
    spec = resolveImageSpec(input, { ...(options.image ?? {}), dtype: 'float32' });
  } catch (err) {
    // The preprocessing message names the Node-RED graph's fields; say what each caller can set.
    const reason = (err as Error).message.replace(/set (\w+) in the graph's preprocessing/, "give the calibration images a $1 (ncs2 optimize --calibration-size WxH, calibrationImage in the API, or the graph node's size fields)");
    throw new CalibrationError(`calibration images cannot fill ${expected(input)}: ${reason}`, { cause: err });
  }
  const count = limit(files.length, options);
  const sampleDims = spec.layout === 'NCHW' ? [spec.channels, spec.height, spec.width] : [spec.height, spec.width, spec.channels];
  const size = sampleDims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count * size);
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, files[i]);
    try {
      const decoded = await decodeImage(await fs.promises.readFile(file), spec);
      writePixels(decoded.pixels, spec, data, i * size);
    } catch (err) {
      throw new CalibrationError(`calibration image ${files[i]}: ${(err as Error).message}`, { cause: err });
    }
  }
  return { name: input.name, data, sampleDims, count };
}
