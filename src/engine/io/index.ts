/** Input preparation (sharp, raw tensors, batching) and output presets (classification, raw). */
export * from './errors';
export * from './preprocess';
export * from './postprocess';
export * from './infer';
