export * from './ids';
export * from './registry';
export * from './engine-binding';
