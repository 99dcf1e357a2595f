/**
 * An error that puts `cause` in context ("ncs2-infer x is invalid: ...") and keeps its `code` as
 * an own property: Node-RED copies an own `code` (and `cause`) to msg.error for Catch nodes, so a
 * flow can branch on CONFIG_INVALID or MODEL_LOAD_FAILED instead of parsing the message.
 */
export function wrapError(message: string, cause: unknown): Error & { code?: string } {
  const err: Error & { code?: string } = new Error(message, { cause });
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string') err.code = code;
  return err;
}
