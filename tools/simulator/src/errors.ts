// Simulator errors: every refusal names an UPPER_SNAKE code, like the services' reason codes.

export type SimErrorCode =
  | 'SCENARIO_NOT_FOUND'
  | 'SCENARIO_NOT_JSON'
  | 'SCENARIO_INVALID'
  | 'SCENARIO_UNKNOWN_MODEL'
  | 'SCENARIO_UNKNOWN_GROUP'
  | 'SCENARIO_TOO_LARGE'
  | 'SIM_QUEUE_FULL'
  | 'BAD_ARGUMENT';

export class SimError extends Error {
  constructor(
    readonly code: SimErrorCode,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'SimError';
  }
}
