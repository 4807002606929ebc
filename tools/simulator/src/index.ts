export { type SimOptions, Simulation, type TraceRecord } from './engine';
export { SimError, type SimErrorCode } from './errors';
export { nextPrice } from './pricing';
export { deriveSeed, lognormal, mulberry32 } from './prng';
export { type Report, renderFiles, runScenario } from './run';
export { parseScenario, type Scenario } from './scenario';
export { resolveScenario, SCENARIO_DIR, simulateCommand } from './shell';
export { gini, Histogram } from './stats';
