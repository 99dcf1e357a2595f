export { parseCpuList, formatCpuList } from './cpulist';
export { readCpuTopology, type CpuTopology, type LogicalCpu, type CoreType, type TopologyOptions } from './cpu-topology';
export { CpuAffinityOptimizer, ortIntraOpAffinity, type AffinityPlan } from './affinity';
