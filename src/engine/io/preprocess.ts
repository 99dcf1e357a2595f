/**
 * Input preparation: encoded images (JPEG, PNG, WebP) and raw tensors become the model's input
 * tensor, written into pooled memory so it can move to a device worker without another copy.
 *
 * Image path: sharp decodes, auto-orients (EXIF), converts colour, resizes and pads/crops in its own
 * threads, producing 8-bit interleaved pixels; one bounded JS pass then writes them into the
 * tensor with the layout, channel order and normalisation the model wants. Input Buffers are only
 * read (Node-RED shares one Buffer between every wire that carries the message).
 */
import sharp, { type Metadata, type OutputInfo, type Sharp, type SharpOptions } from 'sharp';
import { EngineError, InputError } from '../errors';
import { ConfigError } from './errors';
import type { ModelInfo, TensorInfo } from '../graph/model-info';
import { elementCount, showValue, typedArrayCtor, typeOfArray, type Feeds, type TensorData, type TensorType, type TypedArray } from '../tensor';

/**
 * 'top-left' keeps the aspect ratio like 'letterbox' but puts the image at the top-left corner and pads
 * right and bottom, as PaddleOCR's text detector and recognizer inputs are laid out.
 */
export type ResizeMode = 'stretch' | 'letterbox' | 'center-crop' | 'top-left';
export type ChannelOrder = 'RGB' | 'BGR';
export type Layout = 'NCHW' | 'NHWC';
export type ImageDtype = 'float32' | 'uint8';

/** What a user may set; anything left out is taken from the model's input (or a documented default). */
export interface PreprocessOptions {
  /** How an image of another aspect ratio fits the model's size. Default 'stretch'. */
  resize?: ResizeMode;
  /** Target size in pixels; default: the model input's fixed width/height (required when dynamic). */
  width?: number;
  height?: number;
  /** 1 (grayscale) or 3 (colour); default: the model input's channel dim. */
  channels?: 1 | 3;
  /** Order of the three colour channels in the tensor. Default 'RGB'. */
  channelOrder?: ChannelOrder;
  /** Default: detected from the model input (a channel dim of 1 or 3 in position 1 means NCHW). */
  layout?: Layout;
  /** Default: the model input's type. uint8 tensors carry pixels as they are (no normalisation). */
  dtype?: ImageDtype;
  /** value = (pixel * scale - mean[c]) / std[c]. Default scale 1/255, mean 0, std 1 (so 0..1). */
  scale?: number;
  mean?: number | number[];
  std?: number | number[];
  /** 8-bit value of letterbox padding (before normalisation). Default 0 (black). */
  padValue?: number;
  /**
   * Light background: every 8-bit pixel p reads as 255 - p before scaling (with the default scale,
   * x -> 1 - x), so dark ink on light paper looks like a model trained on light strokes on black
   * expects. The pad value stays in the image's own terms (255 pads with paper). Default false.
   */
  invert?: boolean;
  /** Images with more pixels (width x height) are refused before decoding. Default 25,000,000. */
  maxInputPixels?: number;
  /** Most images (or batch rows) one message may carry. Default 64. */
  maxBatch?: number;
}

/** Preprocessing fully resolved against one model input: every field decided. */
export interface ImageSpec {
  inputName: string;
  resize: ResizeMode;
  width: number;
  height: number;
  channels: 1 | 3;
  channelOrder: ChannelOrder;
  layout: Layout;
  dtype: ImageDtype;
  scale: number;
  mean: number[];
  std: number[];
  padValue: number;
  invert: boolean;
  maxInputPixels: number;
}

/**
 * Where the model's view of an image came from, so later stages (boxes, keypoints) can map tensor
 * coordinates back: tensorX = sourceX * scaleX + offsetX (offset > 0 is letterbox padding, < 0 a
 * crop). Source sizes are after EXIF orientation.
 */
export interface ImageGeometry {
  mode: ResizeMode;
  sourceWidth: number;
  sourceHeight: number;
  width: number;
  height: number;
  scaleX: number;
  scaleY: number;
  offsetX: number;
  offsetY: number;
}

/** Where pooled tensors come from and go back to when they never reached a device. */
export interface TensorAllocator {
  allocateTensor(type: TensorType, dims: number[]): TensorData;
  releaseTensor(tensor: TensorData): void;
}

export const DEFAULT_MAX_INPUT_PIXELS = 25_000_000;
export const DEFAULT_MAX_BATCH = 64;
const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp'];

// ------------------------------------------------------------------ resolving options

function dimLabel(input: TensorInfo): string {
  return `'${input.name}' ${input.type}[${input.dims.join(', ')}]`;
}

function positiveInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${what} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function perChannel(value: number | number[] | undefined, fallback: number, channels: number, what: string): number[] {
  const list = value === undefined ? [fallback] : Array.isArray(value) ? value : [value];
  if (list.length !== 1 && list.length !== channels) {
    throw new ConfigError(`${what} needs 1 or ${channels} values (one per channel), got ${list.length}: [${list.join(', ')}]`);
  }
  for (const v of list) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${what} values must be finite numbers, got [${list.join(', ')}]`);
  }
  return list.length === channels ? [...list] : new Array<number>(channels).fill(list[0]);
}

function detectLayout(dims: TensorInfo['dims']): Layout {
  const isChannelDim = (d: number | string | undefined) => d === 1 || d === 3;
  if (isChannelDim(dims[1])) return 'NCHW';
  if (isChannelDim(dims[3])) return 'NHWC';
  return 'NCHW'; // ONNX's convention when the model does not say
}

/**
 * Decides every preprocessing setting for a model input. Throws ConfigError naming the
 * model's dims and the conflicting setting, so the graph config node can show it at load time.
 */
export function resolveImageSpec(input: TensorInfo, options: PreprocessOptions = {}): ImageSpec {
  if (input.dims.length !== 4) {
    throw new ConfigError(`images need a 4-D model input [N, C, H, W] or [N, H, W, C]; input ${dimLabel(input)} has ${input.dims.length} dims; send tensors {data, dims} instead`);
  }
  if (input.type !== 'float32' && input.type !== 'uint8') {
    throw new ConfigError(`images can fill float32 or uint8 inputs; input ${dimLabel(input)} is ${input.type}; send tensors {data, dims, type} instead`);
  }
  const layout = options.layout ?? detectLayout(input.dims);
  if (layout !== 'NCHW' && layout !== 'NHWC') throw new ConfigError(`layout must be NCHW or NHWC, got ${JSON.stringify(layout)}`);
  const [cIndex, hIndex, wIndex] = layout === 'NCHW' ? [1, 2, 3] : [3, 1, 2];

  const fixed = (index: number): number | undefined => {
    const d = input.dims[index];
    return typeof d === 'number' && d > 0 ? d : undefined;
  };
  const pick = (index: number, configured: number | undefined, what: string): number => {
    const model = fixed(index);
    if (configured !== undefined) {
      positiveInt(configured, what);
      if (model !== undefined && model !== configured) {
        throw new ConfigError(`${what} ${configured} does not fit input ${dimLabel(input)} (${layout}), which needs ${model}; clear the setting to follow the model`);
      }
      return configured;
    }
    if (model === undefined) {
      throw new ConfigError(`input ${dimLabel(input)} has a dynamic ${what} (${layout}); set ${what} in the graph's preprocessing`);
    }
    return model;
  };
  const channels = pick(cIndex, options.channels, 'channels');
  if (channels !== 1 && channels !== 3) {
    throw new ConfigError(`images give 1 (grayscale) or 3 (colour) channels; input ${dimLabel(input)} as ${layout} has ${channels}; check the layout setting`);
  }
  const height = pick(hIndex, options.height, 'height');
  const width = pick(wIndex, options.width, 'width');

  const dtype = options.dtype ?? input.type;
  if (dtype !== input.type) {
    throw new ConfigError(`dtype ${dtype} does not match input ${dimLabel(input)}; clear the setting to follow the model`);
  }
  const normalising = options.scale !== undefined || options.mean !== undefined || options.std !== undefined;
  if (dtype === 'uint8' && normalising) {
    throw new ConfigError(`input ${dimLabel(input)} takes uint8 pixels as they are; scale, mean and std apply only to float32 inputs: clear them`);
  }
  const scale = options.scale ?? (dtype === 'float32' ? 1 / 255 : 1);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale === 0) throw new ConfigError(`scale must be a non-zero number, got ${JSON.stringify(options.scale)}`);
  const mean = perChannel(options.mean, 0, channels, 'mean');
  const std = perChannel(options.std, 1, channels, 'std');
  if (std.some((s) => s === 0)) throw new ConfigError(`std values must not be 0, got [${std.join(', ')}]`);

  const resize = options.resize ?? 'stretch';
  if (!['stretch', 'letterbox', 'center-crop', 'top-left'].includes(resize)) {
    throw new ConfigError(`resize must be stretch, letterbox, center-crop or top-left, got ${JSON.stringify(resize)}`);
  }
  const channelOrder = options.channelOrder ?? 'RGB';
  if (channelOrder !== 'RGB' && channelOrder !== 'BGR') throw new ConfigError(`channel order must be RGB or BGR, got ${JSON.stringify(channelOrder)}`);
  const padValue = options.padValue ?? 0;
  if (!Number.isInteger(padValue) || padValue < 0 || padValue > 255) throw new ConfigError(`pad value must be an integer 0..255, got ${JSON.stringify(padValue)}`);
  const maxInputPixels = positiveInt(options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS, 'max input pixels');

  const invert = options.invert ?? false;
  if (typeof invert !== 'boolean') throw new ConfigError(`invert must be true or false, got ${JSON.stringify(options.invert)}`);

  return { inputName: input.name, resize, width, height, channels, channelOrder, layout, dtype, scale, mean, std, padValue, invert, maxInputPixels };
}

/** Per-sample dims (batch excluded) that an image produces under a spec. */
export function imageSampleDims(spec: ImageSpec): number[] {
  return spec.layout === 'NCHW' ? [spec.channels, spec.height, spec.width] : [spec.height, spec.width, spec.channels];
}

/** Maps a point in tensor pixel coordinates back to the (oriented) source image. */
export function toSourcePoint(geometry: ImageGeometry, x: number, y: number): { x: number; y: number } {
  return { x: (x - geometry.offsetX) / geometry.scaleX, y: (y - geometry.offsetY) / geometry.scaleY };
}

// ------------------------------------------------------------------ images

/**
 * Decoded 8-bit interleaved pixels (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA), as a first stage's
 * crops carry them: the second stage skips encoding and decoding.
 */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export type ImageSource = Buffer | RawImage;

/** An object meant as raw pixels (width, height, channels and data; tensors have dims instead). */
export function isRawImage(value: unknown): value is RawImage {
  return typeof value === 'object' && value !== null && !Buffer.isBuffer(value) && 'data' in value && 'width' in value && 'height' in value && 'channels' in value && !('dims' in value);
}

/** Raw pixels whose size and data agree, or an InputError saying what does not. */
export function checkRawImage(image: RawImage): RawImage {
  const { data, width, height, channels } = image;
  const int = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  if (!int(width) || !int(height) || ![1, 2, 3, 4].includes(channels)) {
    throw new InputError(`raw pixels need positive integer width and height and channels 1..4; got width ${showValue(width)}, height ${showValue(height)}, channels ${showValue(channels)}`);
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * channels) {
    throw new InputError(`raw pixels ${width}x${height}x${channels} need a Buffer or Uint8Array of ${width * height * channels} bytes; got ${describeValue(data)}`);
  }
  return image;
}

/** A sharp pipeline over an encoded image or raw pixels. */
export function sharpSource(image: ImageSource, options: SharpOptions = {}): Sharp {
  if (!isRawImage(image)) {
    // sharp's own words for this are a bare "Input Buffer is empty".
    if (image.length === 0) throw new InputError('expected an encoded JPEG, PNG or WebP image; got an empty Buffer (0 bytes): whatever produced it (a file read, a camera, an HTTP request) gave nothing');
    return sharp(image, options);
  }
  const { data, width, height, channels } = checkRawImage(image);
  return sharp(data, { ...options, raw: { width, height, channels } });
}

export interface DecodedImage {
  /** 8-bit interleaved pixels, spec.width x spec.height x spec.channels, in source channel order (RGB or gray). */
  pixels: Buffer;
  geometry: ImageGeometry;
}

function headerOf(image: Buffer): string {
  return [...image.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Decodes one encoded image into 8-bit pixels at the spec's size. The geometry is computed here
 * (not left to sharp's fit modes) so that what is reported is exactly what was applied.
 */
export async function decodeImage(image: ImageSource, spec: ImageSpec): Promise<DecodedImage> {
  const raw = isRawImage(image) ? checkRawImage(image) : undefined;
  const bytes = raw ? raw.data.length : (image as Buffer).length;
  // One sharp instance reads the header and then decodes: each holds a large options object (a
  // second one per image was the largest allocation per frame on the main thread, about 22 KB).
  // The size limit is checked on the header below, with the reason.
  let pipeline = sharpSource(image, { limitInputPixels: false });
  let meta: Metadata;
  try {
    // Header only: cheap, and it lets an oversized image be refused with its size before any decoding.
    meta = raw ? ({ format: 'raw', width: raw.width, height: raw.height } as Metadata) : await pipeline.metadata();
  } catch (err) {
    throw new InputError(`expected an encoded JPEG, PNG or WebP image; got ${bytes} bytes (starting ${headerOf(image as Buffer)}) that cannot be decoded: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!raw && (!meta.format || !ACCEPTED_FORMATS.includes(meta.format))) {
    throw new InputError(`expected a JPEG, PNG or WebP image; got ${meta.format ?? 'an unknown format'}; convert it first`);
  }
  const sourceWidth = meta.autoOrient?.width ?? meta.width;
  const sourceHeight = meta.autoOrient?.height ?? meta.height;
  if (!sourceWidth || !sourceHeight) throw new InputError(`the ${meta.format} image does not state its size; it may be truncated`);
  const pixelCount = sourceWidth * sourceHeight;
  if (pixelCount > spec.maxInputPixels) {
    throw new InputError(`image is ${sourceWidth}x${sourceHeight} = ${pixelCount} pixels, above the limit of ${spec.maxInputPixels} (max input pixels in the graph's preprocessing); scale it down before inference or raise the limit`);
  }

  const { width, height } = spec;
  pipeline = pipeline.rotate().removeAlpha();
  pipeline = spec.channels === 1 ? pipeline.grayscale() : pipeline.toColourspace('srgb');
  let geometry: ImageGeometry;
  if (spec.resize === 'letterbox' || spec.resize === 'top-left') {
    const s = Math.min(width / sourceWidth, height / sourceHeight);
    const w = Math.min(width, Math.max(1, Math.round(sourceWidth * s)));
    const h = Math.min(height, Math.max(1, Math.round(sourceHeight * s)));
    const centred = spec.resize === 'letterbox';
    const left = centred ? Math.floor((width - w) / 2) : 0;
    const top = centred ? Math.floor((height - h) / 2) : 0;
    if (w !== sourceWidth || h !== sourceHeight) pipeline = pipeline.resize(w, h, { fit: 'fill' });
    if (w !== width || h !== height) {
      const v = spec.padValue;
      pipeline = pipeline.extend({ left, top, right: width - w - left, bottom: height - h - top, background: { r: v, g: v, b: v, alpha: 1 } });
    }
    geometry = { mode: spec.resize, sourceWidth, sourceHeight, width, height, scaleX: w / sourceWidth, scaleY: h / sourceHeight, offsetX: left, offsetY: top };
  } else if (spec.resize === 'center-crop') {
    const s = Math.max(width / sourceWidth, height / sourceHeight);
    const w = Math.max(width, Math.round(sourceWidth * s));
    const h = Math.max(height, Math.round(sourceHeight * s));
    const left = Math.floor((w - width) / 2);
    const top = Math.floor((h - height) / 2);
    pipeline = pipeline.resize(w, h, { fit: 'fill' });
    if (w !== width || h !== height) pipeline = pipeline.extract({ left, top, width, height });
    geometry = { mode: 'center-crop', sourceWidth, sourceHeight, width, height, scaleX: w / sourceWidth, scaleY: h / sourceHeight, offsetX: 0 - left, offsetY: 0 - top }; // 0 - x, not -x: no -0 when nothing is cut
  } else {
    if (sourceWidth !== width || sourceHeight !== height) pipeline = pipeline.resize(width, height, { fit: 'fill' });
    geometry = { mode: 'stretch', sourceWidth, sourceHeight, width, height, scaleX: width / sourceWidth, scaleY: height / sourceHeight, offsetX: 0, offsetY: 0 };
  }

  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new InputError(`the ${meta.format} image (${sourceWidth}x${sourceHeight}, ${bytes} bytes) could not be decoded: ${(err as Error).message.split('\n')[0]}; it may be truncated or corrupt`);
  }
  const { info } = out;
  if (info.width !== width || info.height !== height || info.channels !== spec.channels) {
    // Not the user's fault: the pipeline above did not produce what it promised.
    throw new EngineError(`preprocessing produced ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x${spec.channels}`, 'PREPROCESS_FAILED');
  }
  return { pixels: out.data, geometry };
}

/**
 * Writes decoded pixels into `target` (a tensor of spec.dtype) starting at element `offset`, in
 * one pass: layout, channel order, inversion and (pixel * scale - mean) / std together. The loop runs
 * width x height x channels times, bounded by the model's input size.
 */
export function writePixels(pixels: Uint8Array, spec: ImageSpec, target: TypedArray, offset: number): void {
  const { channels } = spec;
  const area = spec.width * spec.height;
  if (pixels.length !== area * channels) throw new InputError(`expected ${area * channels} pixel bytes, got ${pixels.length}`);
  if (target.length < offset + area * channels) throw new InputError(`target tensor holds ${target.length} elements; ${offset + area * channels} needed`);
  // Tensor channel c reads source channel source[c]: reversed for BGR.
  const source = channels === 3 && spec.channelOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2].slice(0, channels);
  const out = target as Float32Array | Uint8Array;
  // Inverting folds into the affine map: ((255 - p) * scale - mean) / std = p * -mul + (add + 255 * mul).
  const sign = spec.invert ? -1 : 1;
  const flip = spec.invert ? 255 : 0;
  if (spec.dtype === 'uint8') {
    for (let c = 0; c < channels; c++) {
      const s = source[c];
      if (spec.layout === 'NCHW') {
        const base = offset + c * area;
        for (let i = 0; i < area; i++) out[base + i] = flip + sign * pixels[i * channels + s];
      } else {
        for (let i = 0; i < area; i++) out[offset + i * channels + c] = flip + sign * pixels[i * channels + s];
      }
    }
    return;
  }
  if (channels === 3 && spec.layout === 'NCHW') {
    // The common case in one pass over the pixels: half the main-thread time of a pass per channel
    // (0.22 against 0.47 ms for 224x224 here), and this runs on the event loop once per image.
    const [s0, s1, s2] = source;
    const [m0, m1, m2] = [0, 1, 2].map((c) => (sign * spec.scale) / spec.std[c]);
    const [a0, a1, a2] = [0, 1, 2].map((c) => (flip * spec.scale - spec.mean[c]) / spec.std[c]);
    const b1 = offset + area;
    const b2 = offset + 2 * area;
    for (let i = 0, j = 0; i < area; i++, j += 3) {
      out[offset + i] = pixels[j + s0] * m0 + a0;
      out[b1 + i] = pixels[j + s1] * m1 + a1;
      out[b2 + i] = pixels[j + s2] * m2 + a2;
    }
    return;
  }
  for (let c = 0; c < channels; c++) {
    const s = source[c];
    const mul = (sign * spec.scale) / spec.std[c];
    const add = (flip * spec.scale - spec.mean[c]) / spec.std[c];
    if (spec.layout === 'NCHW') {
      const base = offset + c * area;
      for (let i = 0; i < area; i++) out[base + i] = pixels[i * channels + s] * mul + add;
    } else {
      for (let i = 0; i < area; i++) out[offset + i * channels + c] = pixels[i * channels + s] * mul + add;
    }
  }
}

/** One image -> a pooled [1, ...] tensor for the spec's input. */
export async function imageToTensor(allocator: TensorAllocator, image: Buffer, spec: ImageSpec): Promise<{ tensor: TensorData; geometry: ImageGeometry }> {
  const decoded = await decodeImage(image, spec);
  const tensor = allocator.allocateTensor(spec.dtype, [1, ...imageSampleDims(spec)]);
  writePixels(decoded.pixels, spec, tensor.data, 0);
  return { tensor, geometry: decoded.geometry };
}

// ------------------------------------------------------------------ raw tensors

/** A tensor as a message carries it: data a typed array or a plain number array, dims with the batch. */
export interface TensorInput {
  data: TypedArray | number[];
  dims: number[];
  type?: TensorType;
}

/** A raw tensor checked against one model input (not yet copied anywhere). */
export interface CheckedTensor {
  type: TensorType;
  dims: number[];
  data: TypedArray | number[];
  /** data is a plain array: it must be converted into a typed tensor. */
  plain: boolean;
}

export function isTensorInput(value: unknown): value is TensorInput {
  return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && 'data' in value && 'dims' in value;
}

/** A short description of what arrived, for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`;
  if (typeof value === 'string') {
    const hint = value.startsWith('data:') || /^[A-Za-z0-9+/=\r\n]{64,}$/.test(value.slice(0, 200)) ? ' (looks like base64: decode it into a Buffer first)' : '';
    return `a string of ${value.length} characters${hint}`;
  }
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as TypedArray).length})`;
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).slice(0, 6).join(', ')}]`;
  return `${typeof value} ${String(value)}`;
}

function isPositiveInteger(d: unknown): boolean {
  return Number.isInteger(d) && (d as number) > 0;
}

function shape(dims: ReadonlyArray<number | string>): string {
  return `[${dims.join(', ')}]`;
}

/**
 * Checks a raw tensor against a model input: dims (batch included) positive integers matching the
 * input's fixed dims, data of the input's type (a typed array of exactly that type, or plain
 * numbers to convert), and as many elements as the dims say. `where` names it in errors.
 */
export function checkTensorInput(value: TensorInput, input: TensorInfo, where: string): CheckedTensor {
  const { dims, data } = value;
  if (!Array.isArray(dims) || dims.length === 0 || !dims.every(isPositiveInteger)) {
    throw new InputError(`${where}.dims must be an array of positive integers (batch first), e.g. ${shape(input.dims.map((d) => (typeof d === 'number' ? d : 1)))}; got ${showValue(dims)}`);
  }
  // built only for an error message: this runs for every tensor message
  const expected = () => `input ${dimLabel(input)}`;
  if (value.type !== undefined && value.type !== input.type) {
    throw new InputError(`${where}.type is ${showValue(value.type)}, but ${expected()} takes ${input.type}`);
  }
  const plain = Array.isArray(data);
  if (!plain) {
    const arrayType = typeOfArray(data);
    const fits = arrayType === input.type || (input.type === 'float16' && arrayType === 'uint16') || (input.type === 'bool' && arrayType === 'uint8');
    if (!fits) {
      const ctor = input.type === 'string' ? undefined : typedArrayCtor(input.type);
      throw new InputError(`${where}.data must be ${ctor ? ctor.name : input.type} or a plain number array for ${expected()}; got ${describeValue(data)}`);
    }
  }
  if (dims.length !== input.dims.length) {
    throw new InputError(`${where}.dims ${shape(dims)} have ${dims.length} dims; ${expected()} needs ${input.dims.length} (batch first)`);
  }
  for (let i = 0; i < input.dims.length; i++) {
    const d = input.dims[i];
    if (typeof d === 'number' && d > 0 && dims[i] !== d) {
      throw new InputError(`${where}.dims ${shape(dims)} do not fit ${expected()}: dim ${i} is ${dims[i]}, expected ${d}`);
    }
  }
  const length = (data as ArrayLike<unknown>).length;
  const needed = elementCount(dims);
  if (length !== needed) {
    throw new InputError(`${where}.dims ${shape(dims)} need ${needed} elements, ${where}.data has ${length}`);
  }
  return { type: input.type, dims: [...dims], data, plain };
}

/** Copies (converting plain numbers) a checked tensor into `target` at element `offset`. */
export function copyTensorInto(tensor: CheckedTensor, target: TypedArray, offset: number, where: string): void {
  const { data } = tensor;
  if (!tensor.plain) {
    (target as Float32Array).set(data as Float32Array, offset);
    return;
  }
  const numbers = data as unknown[];
  if (target instanceof BigInt64Array) {
    for (let i = 0; i < numbers.length; i++) {
      const v = numbers[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new InputError(`${where}.data[${i}] must be an integer for an int64 input, got ${describeValue(v)}`);
      target[offset + i] = BigInt(v);
    }
    return;
  }
  const out = target as Float32Array;
  for (let i = 0; i < numbers.length; i++) {
    const v = numbers[i];
    if (typeof v !== 'number') throw new InputError(`${where}.data[${i}] must be a number, got ${describeValue(v)}`);
    out[offset + i] = v;
  }
}

// ------------------------------------------------------------------ message payloads

export interface PreparedInput {
  feeds: Feeds;
  /** Rows in the batch (the first dim of the tensor that goes to the model). */
  batchSize: number;
  /** The payload was an array (results then come back as an array, one per row). */
  fromArray: boolean;
  /** Per row: how the image was fitted, or null for rows that came as tensors. */
  geometry: Array<ImageGeometry | null>;
  /** Tensors this call took from the pool; give them back with releaseInput if they never run. */
  pooled: TensorData[];
}

export interface PrepareOptions {
  /** How images fill the model's first input; an Error says why images cannot (they are refused with it). */
  image: ImageSpec | Error;
  maxBatch?: number;
}

type Item = { kind: 'image'; index: number; buffer: ImageSource } | { kind: 'tensor'; index: number; tensor: CheckedTensor };

const PAYLOAD_FORMS = 'an encoded image Buffer (JPEG, PNG, WebP), raw pixels {data, width, height, channels}, a tensor {data, dims, type} or an array of these';

function classify(value: unknown, input: TensorInfo, index: number, where: string): Item {
  if (Buffer.isBuffer(value) || isRawImage(value)) return { kind: 'image', index, buffer: value };
  if (isTensorInput(value)) return { kind: 'tensor', index, tensor: checkTensorInput(value, input, where) };
  throw new InputError(`expected ${where} to be ${PAYLOAD_FORMS}; got ${describeValue(value)}`);
}

/**
 * A message payload -> feeds for the model's first input, in one pooled tensor. Images are decoded
 * in parallel (sharp's threads) before the tensor is taken from the pool, so a failing image
 * leaves nothing to clean up. A single typed-array tensor of the right type goes through as it is:
 * the engine copies it once into its transfer arena and never writes to it.
 */
export async function prepareInput(allocator: TensorAllocator, info: ModelInfo, payload: unknown, options: PrepareOptions): Promise<PreparedInput> {
  const input = info.inputs[0];
  if (!input) throw new InputError('the model declares no inputs');
  if (info.inputs.length > 1) {
    throw new InputError(`the model has ${info.inputs.length} inputs (${info.inputs.map((i) => i.name).join(', ')}); msg.payload can feed single-input models only`);
  }
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const fromArray = Array.isArray(payload);
  let items: Item[];
  if (fromArray) {
    const list = payload as unknown[];
    if (list.length === 0) throw new InputError(`expected msg.payload to be ${PAYLOAD_FORMS}; got an empty array`);
    if (list.length > maxBatch) throw new InputError(`msg.payload is an array of ${list.length}; at most ${maxBatch} items fit one batch (max batch in the graph's preprocessing); split the array`);
    if (typeof list[0] === 'number') {
      throw new InputError(`msg.payload is an array of numbers; wrap it as a tensor {data: [...], dims: ${shape(input.dims.map((d) => (typeof d === 'number' ? d : 1)))}}`);
    }
    items = list.map((v, i) => classify(v, input, i, `msg.payload[${i}]`));
  } else {
    items = [classify(payload, input, 0, 'msg.payload')];
  }

  const hasImages = items.some((i) => i.kind === 'image');
  if (hasImages && options.image instanceof Error) {
    throw new InputError(`an image arrived but this model cannot take images: ${options.image.message}`);
  }
  const spec = hasImages ? (options.image as ImageSpec) : undefined;

  // Every item must give the same per-row dims and type, or they cannot form one batch.
  const rowsOf = (item: Item) => (item.kind === 'image' ? 1 : item.tensor.dims[0]);
  const sampleOf = (item: Item) => (item.kind === 'image' ? imageSampleDims(spec!) : item.tensor.dims.slice(1));
  const typeOf = (item: Item): TensorType => (item.kind === 'image' ? spec!.dtype : item.tensor.type);
  const first = items[0];
  const sample = sampleOf(first);
  for (const item of items.slice(1)) {
    const s = sampleOf(item);
    if (s.length !== sample.length || s.some((d, i) => d !== sample[i]) || typeOf(item) !== typeOf(first)) {
      throw new InputError(`array items must share one shape to form a batch: item 0 gives ${typeOf(first)}[N, ${sample.join(', ')}], item ${item.index} gives ${typeOf(item)}[N, ${s.join(', ')}]`);
    }
  }
  const batchSize = items.reduce((n, item) => n + rowsOf(item), 0);
  if (batchSize > maxBatch) throw new InputError(`the batch has ${batchSize} rows; at most ${maxBatch} fit (max batch in the graph's preprocessing)`);
  const fixedBatch = input.dims[0];
  if (typeof fixedBatch === 'number' && fixedBatch > 0 && batchSize !== fixedBatch) {
    throw new InputError(`input ${dimLabel(input)} takes a fixed batch of ${fixedBatch}; got ${batchSize} rows; send ${fixedBatch === 1 ? 'one image or tensor per message (a split node helps)' : `exactly ${fixedBatch}`}`);
  }

  // A lone typed-array tensor needs no copy here.
  if (first.kind === 'tensor' && items.length === 1 && !first.tensor.plain) {
    const t = first.tensor;
    return { feeds: { [input.name]: { type: t.type, dims: t.dims, data: t.data as TypedArray } }, batchSize, fromArray, geometry: new Array<null>(batchSize).fill(null), pooled: [] };
  }

  const decoded = new Map<number, DecodedImage>();
  if (spec) {
    const images = items.filter((i): i is Extract<Item, { kind: 'image' }> => i.kind === 'image');
    const settled = await Promise.allSettled(images.map((i) => decodeImage(i.buffer, spec)));
    settled.forEach((r, k) => {
      if (r.status === 'fulfilled') decoded.set(images[k].index, r.value);
    });
    const failed = settled.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      const reason = (settled[failed] as PromiseRejectedResult).reason as Error;
      if (!fromArray) throw reason;
      throw new InputError(`msg.payload[${images[failed].index}]: ${reason.message}`);
    }
  }

  const perRow = elementCount(sample);
  const tensor = allocator.allocateTensor(typeOf(first), [batchSize, ...sample]);
  const geometry: Array<ImageGeometry | null> = [];
  try {
    let row = 0;
    for (const item of items) {
      if (item.kind === 'image') {
        const d = decoded.get(item.index)!;
        writePixels(d.pixels, spec!, tensor.data, row * perRow);
        geometry.push(d.geometry);
      } else {
        copyTensorInto(item.tensor, tensor.data, row * perRow, fromArray ? `msg.payload[${item.index}]` : 'msg.payload');
        for (let r = 0; r < item.tensor.dims[0]; r++) geometry.push(null);
      }
      row += rowsOf(item);
    }
  } catch (err) {
    allocator.releaseTensor(tensor);
    throw err;
  }
  return { feeds: { [input.name]: tensor }, batchSize, fromArray, geometry, pooled: [tensor] };
}

/** Returns pooled tensors of an input that never reached a device (refused, dropped, engine closed). */
export function releaseInput(allocator: TensorAllocator, prepared: PreparedInput): void {
  for (const tensor of prepared.pooled) allocator.releaseTensor(tensor);
  prepared.pooled = [];
}
