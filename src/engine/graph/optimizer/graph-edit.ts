/**
 * Small helpers for rewriting an ONNX graph in place: attribute access, unique names,
 * producer/consumer maps, Constant hoisting and a stable topological sort (ONNX requires
 * nodes in topological order, and inserted Q/DQ or Cast nodes are appended first).
 */
import {
  AttributeType,
  DataType,
  IAttributeProto,
  IGraphProto,
  IModelProto,
  INodeProto,
  ITensorProto,
  toNumber,
} from '../onnx';

export function findAttr(node: INodeProto, name: string): IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function intAttr(node: INodeProto, name: string, dflt: number): number {
  const a = findAttr(node, name);
  return a && a.i !== null && a.i !== undefined ? toNumber(a.i) : dflt;
}

export function floatAttr(node: INodeProto, name: string, dflt: number): number {
  const a = findAttr(node, name);
  return a && a.f !== null && a.f !== undefined && a.type === AttributeType.FLOAT ? a.f : dflt;
}

export function stringAttr(node: INodeProto, name: string, dflt: string): string {
  const a = findAttr(node, name);
  return a?.s && a.s.length > 0 ? new TextDecoder().decode(a.s) : dflt;
}

export function setAttr(node: INodeProto, attr: IAttributeProto): void {
  const rest = (node.attribute ?? []).filter((a) => a.name !== attr.name);
  node.attribute = [...rest, attr];
}

/** The version of the default (ai.onnx) domain the model imports. */
export function defaultOpset(model: IModelProto): number {
  const e = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return e ? toNumber(e.version) : 0;
}

export function isDefaultDomain(node: INodeProto): boolean {
  return !node.domain || node.domain === 'ai.onnx';
}

/** Nodes carrying subgraphs (If, Loop, Scan, ...): the optimizer does not descend into them. */
export function hasSubgraph(node: INodeProto): boolean {
  return (node.attribute ?? []).some((a) => a.g || (a.graphs && a.graphs.length > 0));
}

export function nodeLabel(node: INodeProto): string {
  return node.name || (node.output ?? [])[0] || '(unnamed)';
}

/** Every name in use (tensors and nodes), so inserted names never collide. */
export class NameScope {
  private readonly used = new Set<string>();

  constructor(graph: IGraphProto) {
    for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) this.used.add(v.name ?? '');
    for (const t of graph.initializer ?? []) this.used.add(t.name ?? '');
    for (const n of graph.node ?? []) {
      if (n.name) this.used.add(n.name);
      for (const s of [...(n.input ?? []), ...(n.output ?? [])]) this.used.add(s);
    }
  }

  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }
}

export interface Use {
  node: INodeProto;
  index: number;
}

export function consumersOf(graph: IGraphProto): Map<string, Use[]> {
  const map = new Map<string, Use[]>();
  for (const node of graph.node ?? []) {
    (node.input ?? []).forEach((name, index) => {
      if (!name) return;
      const list = map.get(name) ?? [];
      list.push({ node, index });
      map.set(name, list);
    });
  }
  return map;
}

export function producersOf(graph: IGraphProto): Map<string, INodeProto> {
  const map = new Map<string, INodeProto>();
  for (const node of graph.node ?? []) for (const o of node.output ?? []) if (o) map.set(o, node);
  return map;
}

export function graphOutputNames(graph: IGraphProto): Set<string> {
  return new Set((graph.output ?? []).map((o) => o.name ?? ''));
}

/**
 * Turns Constant nodes holding a tensor (or float/floats) into initializers, so weights
 * have one representation: exporters (PyTorch especially) emit both.
 */
export function hoistConstants(graph: IGraphProto): void {
  const kept: INodeProto[] = [];
  const inits = graph.initializer ?? [];
  for (const node of graph.node ?? []) {
    const out = (node.output ?? [])[0];
    if (node.opType !== 'Constant' || !isDefaultDomain(node) || !out) {
      kept.push(node);
      continue;
    }
    const a = (node.attribute ?? [])[0];
    let t: ITensorProto | undefined;
    if (a?.name === 'value' && a.t) t = { ...a.t, name: out };
    else if (a?.name === 'value_float' && a.f !== null && a.f !== undefined) t = floatScalar(out, [], [a.f]);
    else if (a?.name === 'value_floats' && a.floats) t = floatScalar(out, [a.floats.length], a.floats);
    if (!t) {
      kept.push(node);
      continue;
    }
    inits.push(t);
  }
  graph.node = kept;
  graph.initializer = inits;
}

function floatScalar(name: string, dims: number[], values: number[]): ITensorProto {
  return { name, dims, dataType: DataType.FLOAT, floatData: values };
}

/**
 * Stable topological sort: nodes keep their relative order unless a node needs an input
 * produced later. Names not produced by any node (graph inputs, initializers, outer scope)
 * count as available.
 */
export function topoSort(graph: IGraphProto): void {
  const nodes = graph.node ?? [];
  const producer = producersOf(graph);
  const done = new Set<INodeProto>();
  const onStack = new Set<INodeProto>();
  const out: INodeProto[] = [];
  for (const root of nodes) {
    if (done.has(root)) continue;
    const stack: Array<{ node: INodeProto; next: number }> = [{ node: root, next: 0 }];
    onStack.add(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const inputs = top.node.input ?? [];
      if (top.next < inputs.length) {
        const p = producer.get(inputs[top.next++]);
        if (p && !done.has(p)) {
          if (onStack.has(p)) throw new Error(`graph has a cycle through node '${nodeLabel(p)}'`);
          onStack.add(p);
          stack.push({ node: p, next: 0 });
        }
        continue;
      }
      stack.pop();
      onStack.delete(top.node);
      done.add(top.node);
      out.push(top.node);
    }
  }
  graph.node = out;
}
