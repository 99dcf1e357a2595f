/** Input preparation (sharp, raw pixels, raw tensors, batching), output presets (classification, raw, detection, OCR), annotated images and crops. */
export * from './errors';
export * from './preprocess';
export * from './postprocess';
export * from './detection';
export * from './ocr';
export * from './annotate';
export * from './crop';
export * from './infer';
export * from './text-file';
