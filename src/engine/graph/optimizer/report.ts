/** Shapes of what the optimizer reports: which nodes changed precision and which did not, and why. */

export interface NodeRef {
  node: string;
  op: string;
}

export interface KeptFloat extends NodeRef {
  reason: string;
}
