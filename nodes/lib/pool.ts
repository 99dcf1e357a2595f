/**
 * An ncs2-device config node is a device pool: a list of members, each of one kind. Every kind is
 * one entry of MEMBER_KINDS (how its editor fields parse, which engine devices it stands for), so
 * a new backend (a remote inference server, say) is one more entry, not a rewrite. A flow saved
 * before pools existed has no `members`: its single-device fields read as one member.
 */
import { ConfigError } from '../../src/engine';
import type { InferenceEngine, StickListing } from '../../src/engine';
import type { QueuePolicy } from '../../src/engine';
import { parseDeviceSettings } from './settings';
import { memberRule, readField } from './field-rules';

type Raw = Record<string, unknown>;

/** What acquireDevice takes (the engine's spec union, whatever kinds it grows). */
export type EngineDeviceSpec = Parameters<InferenceEngine['acquireDevice']>[0];

export interface CpuMember {
  kind: 'cpu';
  workers?: number;
  threadsPerWorker?: number;
  maxInFlight?: number;
}

export interface SimNcs2Member {
  kind: 'sim-ncs2';
  /** Simulated sticks this member stands for. */
  count: number;
  usb: 2 | 3;
  maxInFlight?: number;
}

/** Real sticks on the USB bus: every one found, or the one at `path`. */
export interface UsbMember {
  kind: 'usb';
  path?: string;
}

export type PoolMember = CpuMember | SimNcs2Member | UsbMember;
export type MemberKindName = PoolMember['kind'];

/** The most simulated sticks one member may stand for (each is a timing model plus a share of the host's compute). */
/**
 * A pool-level performance hint, as OpenVINO's are: `latency` keeps the fewest requests in flight
 * (one per device, a CPU member as one worker with every core's threads) and runs each request
 * alone; `throughput` keeps the engine's in-flight sizing from measured service times and turns on
 * its adaptive batching. A number set on a member still wins over what a hint would choose.
 */
export type PerformanceHint = 'latency' | 'throughput';
export const PERFORMANCE_HINTS: readonly PerformanceHint[] = ['latency', 'throughput'];

export interface MemberKind<M extends PoolMember = PoolMember> {
  /** Typed member from the editor's row (strings, possibly blank); throws ConfigError naming the field. */
  parse(raw: Raw): M;
  /** The member with what the hint chooses filled into the fields left blank. */
  hinted?(member: M, hint: PerformanceHint): M;
  /** The engine devices the member stands for; `id` is the member's stable id base. */
  devices(member: M, id: string): EngineDeviceSpec[];
  /** Computes in FP16 only (an INT8 graph cannot run on it; FP32 runs converted). */
  fp16Only: boolean;
  /** Why the member contributes no device now, when that is so (shown, never an error). */
  unavailable?(member: M, usb: () => StickListing): string | undefined;
}

/** A member field by the shared rule table (field-rules.ts, which the editor's validators read too). */
function ruledMemberField(raw: Raw, field: string): number | undefined {
  const reading = readField(memberRule(field)!, raw[field]);
  if (reading.error) throw new ConfigError(reading.error);
  return reading.value as number | undefined;
}

const cpu: MemberKind<CpuMember> = {
  // The device config's own parser, so its checks (and bounds) apply per member.
  parse: (raw) => {
    const s = parseDeviceSettings({ ...raw, kind: 'cpu' });
    return strip({ kind: 'cpu', workers: s.workers, threadsPerWorker: s.threadsPerWorker, maxInFlight: s.maxInFlight });
  },
  devices: (m, id) => [strip({ kind: 'cpu', id, workers: m.workers, threadsPerWorker: m.threadsPerWorker, maxInFlight: m.maxInFlight })],
  // One worker gets every core's threads when threads are left to auto (cores / workers).
  hinted: (m, hint) => (hint === 'latency' ? { ...m, workers: m.workers ?? 1, maxInFlight: m.maxInFlight ?? 1 } : m),
  fp16Only: false,
};

const simNcs2: MemberKind<SimNcs2Member> = {
  parse: (raw) => {
    // usb may arrive as a number from a hand-written flow; the parser takes the editor's strings.
    const s = parseDeviceSettings({ ...raw, kind: 'sim-ncs2', usb: raw.usb === undefined || raw.usb === null ? raw.usb : String(raw.usb) });
    return strip({ kind: 'sim-ncs2', count: ruledMemberField(raw, 'count')!, usb: s.usb ?? 3, maxInFlight: s.maxInFlight });
  },
  // The first stick keeps the member's id (the id a single-stick config always had); the others add their number.
  devices: (m, id) => Array.from({ length: m.count }, (_, i) => strip({ kind: 'sim-ncs2', id: i === 0 ? id : `${id}.${i + 1}`, usb: m.usb, maxInFlight: m.maxInFlight })),
  hinted: (m, hint) => (hint === 'latency' ? { ...m, maxInFlight: m.maxInFlight ?? 1 } : m),
  fp16Only: true,
};

const usb: MemberKind<UsbMember> = {
  parse: (raw) => {
    const path = typeof raw.path === 'string' ? raw.path.trim() : '';
    if (path && !/^[\w.:-]+$/.test(path)) throw new ConfigError(`USB path must look like 1-1.4 (bus-port chain as Linux names it), got ${JSON.stringify(raw.path)}`);
    return path ? { kind: 'usb', path } : { kind: 'usb' };
  },
  // No runtime can drive a real stick in this release: the stick registry lists them as never
  // schedulable, and no engine device is made up for one. The member says so instead of failing.
  devices: () => [],
  fp16Only: true,
  unavailable: (m, usb) => {
    const { status, sticks } = usb();
    const found = sticks.filter((s) => !s.simulated && (!m.path || s.path === m.path));
    const unseen = status.state === 'no USB access' ? ` (${status.reason ?? 'no USB access'})` : '';
    if (found.length === 0) return (m.path ? `no NCS2 stick found at USB ${m.path}` : 'no NCS2 stick found on USB') + unseen;
    return `${found.map((s) => `USB ${s.path}: ${s.state}`).join('; ')}; such sticks are listed but never scheduled`;
  },
};

export const MEMBER_KINDS: Record<MemberKindName, MemberKind> = { cpu, 'sim-ncs2': simNcs2, usb } as Record<MemberKindName, MemberKind>;

export interface PoolConfig {
  members: PoolMember[];
}

/** The pool with its performance hint and the queue bound and policy its graphs get. */
export interface PoolSettings extends PoolConfig {
  /** undefined: no hint (each member as its fields say, graphs batch as their configs say). */
  hint?: PerformanceHint;
  queueCapacity: number;
  queuePolicy: QueuePolicy;
}

export function parsePoolSettings(def: Raw): PoolSettings {
  const { queueCapacity, queuePolicy } = parseDeviceSettings({ queueCapacity: def.queueCapacity, queuePolicy: def.queuePolicy });
  const raw = def.performance;
  const blank = raw === undefined || raw === null || raw === '';
  if (!blank && !PERFORMANCE_HINTS.includes(raw as PerformanceHint)) throw new ConfigError(`performance hint must be blank, ${PERFORMANCE_HINTS.join(' or ')}, got ${JSON.stringify(raw)}`);
  const pool = parsePool(def);
  const hint = blank ? undefined : (raw as PerformanceHint);
  const members = hint ? pool.members.map((m) => MEMBER_KINDS[m.kind].hinted?.(m, hint) ?? m) : pool.members;
  return hint ? { members, hint, queueCapacity, queuePolicy } : { members, queueCapacity, queuePolicy };
}

/** What a pool is called where it has no name: its members' kinds ("cpu + 2 sim-ncs2"). */
export function poolLabel(pool: PoolConfig): string {
  return pool.members.map((m) => (m.kind === 'sim-ncs2' && m.count > 1 ? `${m.count} sim-ncs2` : m.kind)).join(' + ');
}

/**
 * The members of an ncs2-device config as saved by the editor. `members` absent (a flow saved
 * before pools) reads the old single-device fields (kind, workers, threadsPerWorker, maxInFlight,
 * usb) as one member, so that flow deploys unchanged.
 */
export function parsePool(def: Raw): PoolConfig {
  const raw = def.members;
  if (raw === undefined || raw === null || raw === '') {
    const kind = def.kind === undefined || def.kind === '' ? 'cpu' : def.kind;
    return { members: [parseMember({ ...def, kind }, 1)] };
  }
  if (!Array.isArray(raw)) throw new ConfigError(`members must be a list of devices, got ${JSON.stringify(raw)}`);
  if (raw.length === 0) throw new ConfigError('the pool has no members; add at least one device (cpu, sim-ncs2 or usb)');
  return { members: raw.map((m, i) => parseMember(m, i + 1)) };
}

function parseMember(raw: unknown, position: number): PoolMember {
  if (typeof raw !== 'object' || raw === null) throw new ConfigError(`member ${position} must be an object with a kind, got ${JSON.stringify(raw)}`);
  const r = raw as Raw;
  const kind = MEMBER_KINDS[r.kind as MemberKindName];
  if (!kind) throw new ConfigError(`member ${position}: kind must be one of ${Object.keys(MEMBER_KINDS).join(', ')}, got ${JSON.stringify(r.kind)}`);
  try {
    return kind.parse(r);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`member ${position} (${String(r.kind)}): ${err.message}`);
    throw err;
  }
}

/**
 * A member's engine device id base: the first member keeps the id a single-device config always
 * had (`<kind>-<config id>`), so a migrated flow's device and its loaded graphs survive the
 * upgrade; later members add their position. Unchanged members keep their ids across redeploys.
 */
export function memberId(configId: string, member: PoolMember, index: number): string {
  return index === 0 ? `${member.kind}-${configId}` : `${member.kind}-${configId}-m${index + 1}`;
}

/** One engine device of the pool, with the member it belongs to. */
export interface PoolDevice {
  spec: EngineDeviceSpec;
  member: PoolMember;
  /** 1-based position of the member in the list (what the editor shows). */
  position: number;
}

/** Every engine device the pool stands for, in member order. */
export function poolDevices(configId: string, pool: PoolConfig): PoolDevice[] {
  return pool.members.flatMap((member, index) => MEMBER_KINDS[member.kind].devices(member, memberId(configId, member, index)).map((spec) => ({ spec, member, position: index + 1 })));
}

/** Drops undefined fields: the engine compares specs as JSON to tell whether a redeploy changed a device. */
function strip<T extends object>(o: T): T {
  return JSON.parse(JSON.stringify(o)) as T;
}
