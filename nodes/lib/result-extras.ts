/**
 * What ncs2-infer can add after a detection or text-detection result: an annotated JPEG for
 * dashboards (msg.annotated) and crops of the found regions for a second graph (msg.payload
 * becomes the crops, msg.regions the boxes they came from, in the same order).
 */
import { InputError, annotateImage, cropRegions, isRawImage } from '../../src/engine';
import type { Annotation, CropRegion, ImageSource, RawImage, InferencePayload } from '../../src/engine';
import type { NodeMessage } from './red';

export interface ResultExtras {
  /** Put a JPEG of the input with the result's boxes drawn on msg.annotated. */
  annotate: boolean;
  /** Replace msg.payload with crops of the result's boxes (raw pixels), boxes on msg.regions; false: off. */
  crop: false | { padding: number };
}

type BoxItem = Annotation & Record<string, unknown>;

/** A region on msg.regions: the first graph's result item, where it was cut, and (array input) from which image. */
export type RegionItem = BoxItem & { region: CropRegion; image?: number };

function isImage(value: unknown): value is ImageSource {
  return Buffer.isBuffer(value) || isRawImage(value);
}

function hasBox(value: unknown): value is BoxItem {
  return typeof value === 'object' && value !== null && typeof (value as BoxItem).box === 'object';
}

/** Per input image, its result items; or an error saying why the options cannot apply. */
function perImage(input: unknown, payload: InferencePayload): { images: ImageSource[]; items: BoxItem[][] } {
  const images = Array.isArray(input) ? input : [input];
  if (!images.every(isImage)) {
    throw new InputError('annotate and crop regions need image input (an encoded image Buffer or raw pixels, or an array of them); tensors carry no image to draw on or cut from');
  }
  const rows = (Array.isArray(input) ? payload : [payload]) as unknown[];
  if (!Array.isArray(rows) || rows.length !== images.length || !rows.every((r) => Array.isArray(r) && r.every(hasBox))) {
    throw new InputError('annotate and crop regions need a result with boxes: choose the detection or text-detection preset on the ncs2-graph');
  }
  return { images, items: rows as BoxItem[][] };
}

/** The annotated-image text of a result item: a detection's label and score, a recognised text. */
function annotation(item: BoxItem): Annotation {
  return { box: item.box, label: typeof item.label === 'string' ? item.label : undefined, score: typeof item.score === 'number' ? item.score : undefined, classIndex: typeof item.classIndex === 'number' ? item.classIndex : undefined };
}

/** Adds msg.annotated and/or the crops to a message whose payload was `input` and whose result is msg.payload. */
export async function applyResultExtras(extras: ResultExtras, msg: NodeMessage, input: unknown): Promise<void> {
  if (!extras.annotate && !extras.crop) return;
  const { images, items } = perImage(input, msg.payload as InferencePayload);
  if (extras.annotate) {
    const drawn = await Promise.all(images.map((image, i) => annotateImage(image, items[i].map(annotation))));
    msg.annotated = Array.isArray(input) ? drawn : drawn[0];
  }
  if (extras.crop) {
    const padding = extras.crop.padding;
    const cut = await Promise.all(images.map((image, i) => cropRegions(image, items[i], { padding })));
    const crops: RawImage[] = [];
    const regions: RegionItem[] = [];
    cut.forEach((c, i) => {
      c.crops.forEach((crop, k) => {
        crops.push(crop);
        const item = items[i][c.index[k]];
        regions.push(Array.isArray(input) ? { ...item, region: c.regions[k], image: i } : { ...item, region: c.regions[k] });
      });
    });
    msg.payload = crops;
    msg.regions = regions;
  }
}
