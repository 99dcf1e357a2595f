import type { ModelInfo } from '../graph/model-info';
import { InputError } from '../errors';
import { elementCount, typeOfArray, describeArrival, type Feeds } from '../tensor';

/**
 * Checks feeds against the model's declared inputs before anything reaches the runtime, so the
 * error names what was expected and what arrived. Returns the batch size (first dim of the first input).
 */
export function validateFeeds(info: ModelInfo, feeds: Feeds): number {
  if (typeof feeds !== 'object' || feeds === null) {
    throw new InputError(`expected an object of input tensors {${info.inputs.map((i) => i.name).join(', ')}}, got ${describeArrival(feeds)}`);
  }
  const expectedNames = info.inputs.map((i) => i.name);
  const extra = Object.keys(feeds).filter((k) => !expectedNames.includes(k));
  if (extra.length) {
    throw new InputError(`unexpected input ${extra.map((e) => `'${e}'`).join(', ')}; the model's inputs are ${expectedNames.map((n) => `'${n}'`).join(', ')}`);
  }
  let batch = 1;
  info.inputs.forEach((input, index) => {
    const feed = feeds[input.name];
    const expected = `${input.type}[${input.dims.join(', ')}]`;
    if (!feed) throw new InputError(`missing input '${input.name}': expected ${expected}`);
    if (!Array.isArray(feed.dims) || feed.dims.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new InputError(`input '${input.name}': dims must be positive integers, got ${JSON.stringify(feed.dims)}`);
    }
    if (feed.type !== input.type) {
      throw new InputError(`input '${input.name}': expected type ${input.type}, got ${feed.type}`);
    }
    const arrayType = typeOfArray(feed.data);
    const compatible = arrayType === feed.type || (feed.type === 'float16' && arrayType === 'uint16') || (feed.type === 'bool' && arrayType === 'uint8');
    if (!compatible) {
      throw new InputError(`input '${input.name}': data must be a typed array for ${feed.type}, got ${describeArrival(feed.data)}`);
    }
    if (feed.dims.length !== input.dims.length) {
      throw new InputError(`input '${input.name}': expected ${input.dims.length} dims ${expected}, got [${feed.dims.join(', ')}]`);
    }
    input.dims.forEach((d, i) => {
      if (typeof d === 'number' && d > 0 && feed.dims[i] !== d) {
        throw new InputError(`input '${input.name}': dim ${i} must be ${d} (${expected}), got [${feed.dims.join(', ')}]`);
      }
    });
    const n = elementCount(feed.dims);
    if (feed.data.length !== n) {
      throw new InputError(`input '${input.name}': dims [${feed.dims.join(', ')}] need ${n} elements, data has ${feed.data.length}`);
    }
    if (index === 0) batch = feed.dims[0] ?? 1;
  });
  return batch;
}
