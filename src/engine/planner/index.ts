export { planThroughput, sustainedEstimate, type Plan, type PlanModel, type PlanOptions, type Bottleneck } from './planner';
export { planModelFile, simBenchVerdict, type ModelPlan, type SimBenchVerdict } from './plan-model';
