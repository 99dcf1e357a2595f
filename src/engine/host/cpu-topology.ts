/**
 * CPU topology from Linux sysfs: logical CPUs, their SMT siblings, and (on hybrid parts) which
 * are performance and which efficiency cores:
 * - Intel hybrid (Alder Lake and later): /sys/devices/cpu_core/cpus (P) and /sys/devices/cpu_atom/cpus (E);
 * - Arm big.LITTLE: /sys/devices/system/cpu/cpuN/cpu_capacity (the biggest are the performance cores).
 * Everything is read from a root that tests point at a fake tree. Hosts without sysfs (macOS,
 * Windows) get one CPU per os.cpus() entry and no hybrid information.
 */
import { readFileSync, readdirSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseCpuList } from './cpulist';

export type CoreType = 'performance' | 'efficiency';

export interface LogicalCpu {
  id: number;
  /** Logical CPUs sharing this one's physical core (itself included). */
  siblings: number[];
  coreId?: number;
  packageId?: number;
  type: CoreType;
  /** Arm's relative capacity (1024 = the biggest core), when the kernel gives it. */
  capacity?: number;
}

export interface CpuTopology {
  cpus: LogicalCpu[];
  online: number[];
  /** CPUs this process may run on (its affinity mask). */
  allowed: number[];
  /** One entry per physical core: its logical CPUs. */
  physicalCores: number[][];
  smt: boolean;
  hybrid: boolean;
  /** Where the performance/efficiency split came from. */
  hybridSource: 'intel cpu_core/cpu_atom' | 'arm cpu_capacity' | 'none';
  performance: number[];
  efficiency: number[];
}

export interface TopologyOptions {
  /** Root of the filesystem to read (default '/'). */
  root?: string;
  /** Content of /proc/self/status (default: read from `root`). */
  procStatus?: string;
}

function read(root: string, p: string): string | undefined {
  try {
    return readFileSync(path.join(root, p), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readList(root: string, p: string): number[] | undefined {
  const text = read(root, p);
  if (text === undefined || text === '') return undefined;
  try {
    return parseCpuList(text);
  } catch {
    return undefined;
  }
}

function readInt(root: string, p: string): number | undefined {
  const text = read(root, p);
  const n = text === undefined ? NaN : Number(text);
  return Number.isFinite(n) ? n : undefined;
}

export function readCpuTopology(options: TopologyOptions = {}): CpuTopology {
  const root = options.root ?? '/';
  const sys = 'sys/devices/system/cpu';
  let online = readList(root, `${sys}/online`);
  if (!online) {
    let ids: number[] = [];
    try {
      ids = readdirSync(path.join(root, sys))
        .map((e) => /^cpu(\d+)$/.exec(e)?.[1])
        .filter((x): x is string => x !== undefined)
        .map(Number);
    } catch {
      // no sysfs: fall back to what Node sees
    }
    online = ids.length > 0 ? ids.sort((a, b) => a - b) : os.cpus().map((_, i) => i);
  }
  const status = options.procStatus ?? read(root, 'proc/self/status') ?? '';
  const allowedLine = /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1];
  let allowed = online;
  if (allowedLine) {
    try {
      allowed = parseCpuList(allowedLine).filter((c) => online!.includes(c));
    } catch {
      allowed = online;
    }
  }

  const pCores = readList(root, 'sys/devices/cpu_core/cpus');
  const eCores = readList(root, 'sys/devices/cpu_atom/cpus');
  const capacities = new Map<number, number>();
  for (const id of online) {
    const c = readInt(root, `${sys}/cpu${id}/cpu_capacity`);
    if (c !== undefined) capacities.set(id, c);
  }
  let hybridSource: CpuTopology['hybridSource'] = 'none';
  let typeOf = (_id: number): CoreType => 'performance';
  if (pCores && eCores && eCores.length > 0) {
    hybridSource = 'intel cpu_core/cpu_atom';
    const e = new Set(eCores);
    typeOf = (id) => (e.has(id) ? 'efficiency' : 'performance');
  } else if (capacities.size > 0 && new Set(capacities.values()).size > 1) {
    hybridSource = 'arm cpu_capacity';
    const max = Math.max(...capacities.values());
    typeOf = (id) => ((capacities.get(id) ?? max) === max ? 'performance' : 'efficiency');
  }

  const cpus: LogicalCpu[] = online.map((id) => {
    const siblings = readList(root, `${sys}/cpu${id}/topology/thread_siblings_list`) ?? readList(root, `${sys}/cpu${id}/topology/core_cpus_list`) ?? [id];
    return {
      id,
      siblings,
      coreId: readInt(root, `${sys}/cpu${id}/topology/core_id`),
      packageId: readInt(root, `${sys}/cpu${id}/topology/physical_package_id`),
      type: typeOf(id),
      capacity: capacities.get(id),
    };
  });
  const seen = new Set<string>();
  const physicalCores: number[][] = [];
  for (const c of cpus) {
    const group = c.siblings.filter((s) => online!.includes(s));
    const key = group.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    physicalCores.push(group);
  }
  return {
    cpus,
    online,
    allowed,
    physicalCores,
    smt: physicalCores.some((g) => g.length > 1),
    hybrid: hybridSource !== 'none',
    hybridSource,
    performance: cpus.filter((c) => c.type === 'performance').map((c) => c.id),
    efficiency: cpus.filter((c) => c.type === 'efficiency').map((c) => c.id),
  };
}
