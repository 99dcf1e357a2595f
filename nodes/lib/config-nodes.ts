import type { DeviceLease } from './device-lease';
import type { GraphLease } from './graph-lease';
import type { RedNode } from './red';

/** An ncs2-device node as other nodes find it with RED.nodes.getNode. */
export interface DeviceConfigNode extends RedNode {
  /** Present when the configuration is valid. */
  lease?: DeviceLease;
  /** Why there is no lease. */
  configError?: Error;
}

/** An ncs2-graph node as other nodes (and the admin endpoint) find it. */
export interface GraphConfigNode extends RedNode {
  lease?: GraphLease;
  configError?: Error;
}
