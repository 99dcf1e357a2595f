import type { ModelInfo } from '../graph/model-info';
import { InputError, ModelLoadError } from '../errors';
import { elementCount, typeOfArray, describeArrival, showValue, MAX_TENSOR_BYTES, type Feeds } from '../tensor';

/**
 * Checks feeds against the model's declared inputs (and that its outputs can come back) before
 * anything reaches the runtime, so the error names what was expected and what arrived. Returns
 * the batch size (first dim of the first input).
 */
export function validateFeeds(info: ModelInfo, feeds: Feeds): number {
  if (typeof feeds !== 'object' || feeds === null) {
    throw new InputError(`expected an object of input tensors {${info.inputs.map((i) => i.name).join(', ')}}, got ${describeArrival(feeds)}`);
  }
  // onnxruntime hands string outputs back as JS arrays, which cannot travel in the tensor arenas.
  const text = info.outputs.find((o) => o.type === 'string');
  if (text) {
    throw new ModelLoadError(`the model's output '${text.name}' is a string tensor (string[${text.dims.join(', ')}]); only numeric outputs (float, int, bool) can be run here: export the model without its string step (e.g. a label lookup) and set a labels file instead`);
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
    if (typeof feed !== 'object') throw new InputError(`input '${input.name}': expected a tensor {type, dims, data} (${expected}), got ${describeArrival(feed)}`);
    if (!Array.isArray(feed.dims) || feed.dims.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new InputError(`input '${input.name}': dims must be positive integers, got ${showValue(feed.dims)}`);
    }
    if (feed.type !== input.type) {
      throw new InputError(`input '${input.name}': expected type ${input.type}, got ${typeof feed.type === 'string' ? feed.type : showValue(feed.type)}`);
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
    if (feed.data.byteLength > MAX_TENSOR_BYTES) {
      throw new InputError(`input '${input.name}': the tensor is ${feed.data.byteLength} bytes; at most ${MAX_TENSOR_BYTES} (1 GiB) fit one request; split the batch`);
    }
    if (index === 0) batch = feed.dims[0] ?? 1;
  });
  return batch;
}

/** Node's timers hold 32-bit milliseconds; a longer delay fires at once. */
const LONGEST_TIMER_MS = 2_147_483_647;

/**
 * Checks what a caller passes with a task: a deadline must be a number of milliseconds > 0, up to
 * about 24.8 days (NaN, a string or a longer delay would make the timer expire the task at once).
 */
export function validateSubmitOptions(options: { deadlineMs?: unknown }): void {
  const deadline = options.deadlineMs;
  if (deadline === undefined) return;
  if (typeof deadline !== 'number' || !(deadline > 0 && deadline <= LONGEST_TIMER_MS)) {
    throw new InputError(`deadlineMs must be a number of milliseconds > 0 and at most ${LONGEST_TIMER_MS} (or left out for no deadline), got ${showValue(deadline)}`);
  }
}
