/**
 * What each deployed ncs2-infer node did with its input messages, for ncs2-stats. A node's own
 * backpressure drops and refuses messages before they reach the engine, so the engine's graph
 * statistics cannot count them; the node counts them here.
 */

/** Per input message, each ends in exactly one of answered, failed, dropped or rejected; `held` are not ended yet. */
export interface InferMessageCounts {
  received: number;
  /** Sent on with a result (a batch message split into items counts once, when it completes). */
  answered: number;
  /** Ended with an error other than a full queue (bad input, model not loaded, ...). */
  failed: number;
  /** Ended without an error by a drop policy (drop-oldest, drop-newest), the node's or the engine's. */
  dropped: number;
  /** Ended with an error by policy reject, the node's or the engine's. */
  rejected: number;
  /** Waiting in the node or in the engine right now. */
  held: number;
}

export interface InferNodeSource {
  /** The node's name, or its id when it has none. */
  label: string;
  /** The engine graph id once the model is loaded (for a stats filter on one graph). */
  graphId(): string | undefined;
  counts(): InferMessageCounts;
}

export interface InferNodeCounts extends InferMessageCounts {
  node: string;
  graphId?: string;
}

const sources = new Map<string, InferNodeSource>();

/** Registers a deployed node under its id; the returned function removes it (on close). */
export function trackInferNode(id: string, source: InferNodeSource): () => void {
  sources.set(id, source);
  return () => {
    if (sources.get(id) === source) sources.delete(id);
  };
}

export function inferNodeCounts(): InferNodeCounts[] {
  return [...sources.values()].map((s) => ({ node: s.label, graphId: s.graphId(), ...s.counts() }));
}
