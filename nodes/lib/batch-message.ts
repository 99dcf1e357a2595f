import { InputError } from '../../src/engine';
import type { NodeMessage } from './red';

/**
 * The batch message ncs2-batch sends and ncs2-infer reads: `payload` is the array of the items'
 * payloads (Buffers and tensors as they came: shared, never copied) and `ncs2Batch` holds each
 * item's own message without its payload, so no tensor rides twice. Item messages keep every
 * property they had, _msgid, topic and parts included, so splitting restores them as they were.
 */
export const BATCH_PROPERTY = 'ncs2Batch';

export interface BatchItem {
  payload: unknown;
  /** The item's own message, payload put back. */
  msg: NodeMessage;
}

/** Takes the payloads out of `messages` (mutating them, as Node-RED nodes reuse msg) into one batch message. */
export function makeBatchMessage(messages: NodeMessage[], trigger: string): NodeMessage {
  const payloads = messages.map((m) => {
    const payload = m.payload;
    delete m.payload;
    return payload;
  });
  return { payload: payloads, [BATCH_PROPERTY]: messages, batch: { size: messages.length, trigger } };
}

/**
 * The items of a batch message, or undefined for an ordinary message. A message that claims to be
 * a batch but does not fit the format is refused rather than run as something else.
 */
export function readBatch(msg: NodeMessage): BatchItem[] | undefined {
  const items = msg[BATCH_PROPERTY];
  if (items === undefined) return undefined;
  const payload = msg.payload;
  if (!Array.isArray(items) || !Array.isArray(payload) || items.length !== payload.length || items.some((m) => typeof m !== 'object' || m === null)) {
    const got = Array.isArray(items) && Array.isArray(payload) ? `${items.length} item messages for ${payload.length} payloads` : `msg.${BATCH_PROPERTY} ${Array.isArray(items) ? 'an array' : typeof items} and msg.payload ${Array.isArray(payload) ? 'an array' : typeof payload}`;
    throw new InputError(`msg.${BATCH_PROPERTY} marks a batch from ncs2-batch, which needs msg.payload and msg.${BATCH_PROPERTY} to be arrays of equal length; got ${got}. Delete msg.${BATCH_PROPERTY} to run msg.payload as an ordinary array`);
  }
  return payload.map((p, i) => {
    const item = items[i] as NodeMessage;
    item.payload = p;
    return { payload: p, msg: item };
  });
}
