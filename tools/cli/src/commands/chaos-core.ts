// The pure core of `fedai chaos`: the seeded fault schedule, reading a client's answer (its request
// id and signed cost), reconciling the tab's charges with the answers the clients received, the
// checks and the report (JSON and Markdown). No I/O here; chaos.ts is the shell.
import { mulberry32 } from '@fed-ai/protocol';

export const FAULT_KINDS = [
  'kill-restart',
  'relay-restart',
  'node-stall',
  'slow-settlement',
  'postgres-restart',
] as const;
type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  /** Milliseconds after the load started. */
  atMs: number;
  kind: FaultKind;
  /** The service it hits (the settlement proxy for slow-settlement). */
  target: string;
  /** Downtime before a restart, how long a node stays stopped, or how long settlement stays slow. */
  holdMs: number;
  /** slow-settlement: the delay added to every chunk each way. */
  delayMs?: number;
}

export interface PlanOptions {
  seed: number;
  durationMs: number;
  /** No fault before this (the load warms up). */
  startMs: number;
  /** No fault starts later than durationMs − endMarginMs (the last restart has time to finish). */
  endMarginMs: number;
  minGapMs: number;
  maxGapMs: number;
  /** Services a kill-restart may hit. */
  killTargets: readonly string[];
  /** Nodes a stall may hit. */
  nodes: readonly string[];
  /** Whether the router talks to settlement through the delaying proxy. */
  slowSettlement: boolean;
  /** Whether the services share a PostgreSQL server that may be crashed and restarted. */
  postgres?: boolean;
}

/** Most faults one plan holds (a bound on the schedule, whatever the options). */
const MAX_FAULTS = 10_000;

/** The fault schedule: a fault every minGapMs..maxGapMs, kind and target drawn from the seed. */
export function planFaults(options: PlanOptions): Fault[] {
  const random = mulberry32(options.seed);
  const between = (low: number, high: number) => Math.round(low + random() * (high - low));
  const pick = <T>(items: readonly T[]): T =>
    items[Math.min(items.length - 1, Math.floor(random() * items.length))]!;
  const kinds = FAULT_KINDS.filter(
    (kind) =>
      (kind !== 'kill-restart' || options.killTargets.length > 0) &&
      (kind !== 'node-stall' || options.nodes.length > 0) &&
      (kind !== 'slow-settlement' || options.slowSettlement) &&
      (kind !== 'postgres-restart' || options.postgres === true),
  );
  const faults: Fault[] = [];
  const lastMs = options.durationMs - options.endMarginMs;
  let atMs = options.startMs;
  while (atMs <= lastMs && faults.length < MAX_FAULTS && kinds.length > 0) {
    const kind = pick(kinds);
    if (kind === 'kill-restart')
      faults.push({ atMs, kind, target: pick(options.killTargets), holdMs: between(500, 3000) });
    else if (kind === 'relay-restart')
      faults.push({ atMs, kind, target: 'relay', holdMs: between(500, 3000) });
    else if (kind === 'postgres-restart')
      faults.push({ atMs, kind, target: 'postgres', holdMs: between(500, 3000) });
    else if (kind === 'node-stall')
      faults.push({ atMs, kind, target: pick(options.nodes), holdMs: between(2000, 6000) });
    else
      faults.push({
        atMs,
        kind,
        target: 'settlement-proxy',
        holdMs: between(3000, 8000),
        delayMs: between(200, 1500),
      });
    atMs += between(options.minGapMs, options.maxGapMs);
  }
  return faults;
}

/** What a client made of one HTTP 2xx answer body. */
export type AnswerOutcome =
  | { ok: true; requestId: string; costMsat: number }
  | { ok: false; code: string; requestId?: string };

const safeMsat = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function fedaiOf(json: unknown): { requestId: string; costMsat: number } | null {
  if (typeof json !== 'object' || json === null) return null;
  const fedai = (json as { fedai?: unknown }).fedai;
  if (typeof fedai !== 'object' || fedai === null) return null;
  const { request_id: requestId, cost_msat: costMsat, receipt } = fedai as Record<string, unknown>;
  if (typeof requestId !== 'string' || !safeMsat(costMsat) || typeof receipt !== 'object' || receipt === null)
    return null;
  return { requestId, costMsat };
}

function errorCodeOf(json: unknown): string | null {
  if (typeof json !== 'object' || json === null) return null;
  const code = (json as { error?: { code?: unknown } }).error?.code;
  return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : 'STREAM_ERROR';
}

/**
 * Reads an answer of /v1/chat/completions (JSON, or an SSE stream ending in `data: [DONE]`): ok with
 * the request id and signed cost of its `fedai` block (with a receipt), else the reason code.
 */
export function parseAnswer(body: string): AnswerOutcome {
  const trimmed = body.trimStart();
  if (trimmed.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(trimmed);
    } catch {
      return { ok: false, code: 'BAD_ANSWER' };
    }
    const fedai = fedaiOf(json);
    if (!fedai) return { ok: false, code: 'NO_RECEIPT' };
    return { ok: true, ...fedai };
  }
  let fedai: { requestId: string; costMsat: number } | null = null;
  let done = false;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return { ok: false, code: 'BAD_ANSWER' };
    }
    if (typeof json === 'object' && json !== null && 'error' in json)
      return { ok: false, code: errorCodeOf(json) ?? 'STREAM_ERROR' };
    fedai = fedaiOf(json) ?? fedai;
  }
  if (!done)
    return { ok: false, code: 'STREAM_INCOMPLETE', ...(fedai ? { requestId: fedai.requestId } : {}) };
  if (!fedai) return { ok: false, code: 'NO_RECEIPT' };
  return { ok: true, ...fedai };
}

/** One row of the tab's charges as `/v1/tabs/me` lists them. */
export interface ChargeRow {
  requestId: string;
  amountMsat: number;
}

/** Every charge seen so far across looks at the tab (which lists only the most recent few). */
export interface ChargeLog {
  byRequest: Map<string, number>;
  /** Rows seen with a request id already seen at another amount, or twice in one look. */
  duplicates: number;
  /** Looks where every listed row was new: charges between two looks may not have been seen. */
  gaps: number;
  looks: number;
}

export const newChargeLog = (): ChargeLog => ({ byRequest: new Map(), duplicates: 0, gaps: 0, looks: 0 });

/** Most charges a log keeps (a bound: a chaos run of 24 h at 16 req/s stays far under it). */
const MAX_CHARGES = 2_000_000;

/** Adds one look at the tab (`listLimit`: how many rows the tab lists at most). */
export function observeCharges(log: ChargeLog, rows: readonly ChargeRow[], listLimit: number): void {
  const inLook = new Set<string>();
  let fresh = 0;
  for (const row of rows) {
    if (inLook.has(row.requestId)) {
      log.duplicates++;
      continue;
    }
    inLook.add(row.requestId);
    const known = log.byRequest.get(row.requestId);
    if (known === undefined) {
      fresh++;
      if (log.byRequest.size < MAX_CHARGES) log.byRequest.set(row.requestId, row.amountMsat);
    } else if (known !== row.amountMsat) log.duplicates++;
  }
  if (log.looks > 0 && rows.length >= listLimit && fresh === rows.length) log.gaps++;
  log.looks++;
}

export interface Reconciliation {
  /** Answers the clients received with a receipt. */
  answers: number;
  answeredMsat: number;
  chargesSeen: number;
  /** Charges whose request id no client received an answer for. */
  chargedWithoutAnswer: number;
  /** Charges whose amount is not the answer's signed cost_msat. */
  chargedWrongAmount: number;
  /** Answers with a receipt whose charge was never seen in the tab. */
  answersNotSeenCharged: number;
  duplicateCharges: number;
  chargeLookGaps: number;
  /** What the tab lost: funded − balance − reserved at the end. */
  spentMsat: number;
  /** spentMsat − answeredMsat: positive, charged for more than was answered; negative, less. */
  unexplainedMsat: number;
}

export function reconcile(input: {
  answers: ReadonlyMap<string, number>;
  charges: ChargeLog;
  fundedMsat: number;
  finalBalanceMsat: number;
  finalReservedMsat: number;
}): Reconciliation {
  let chargedWithoutAnswer = 0;
  let chargedWrongAmount = 0;
  for (const [requestId, amountMsat] of input.charges.byRequest) {
    const cost = input.answers.get(requestId);
    if (cost === undefined) chargedWithoutAnswer++;
    else if (cost !== amountMsat) chargedWrongAmount++;
  }
  let answeredMsat = 0;
  let answersNotSeenCharged = 0;
  for (const [requestId, cost] of input.answers) {
    answeredMsat += cost;
    if (!input.charges.byRequest.has(requestId)) answersNotSeenCharged++;
  }
  const spentMsat = input.fundedMsat - input.finalBalanceMsat - input.finalReservedMsat;
  return {
    answers: input.answers.size,
    answeredMsat,
    chargesSeen: input.charges.byRequest.size,
    chargedWithoutAnswer,
    chargedWrongAmount,
    answersNotSeenCharged,
    duplicateCharges: input.charges.duplicates,
    chargeLookGaps: input.charges.gaps,
    spentMsat,
    unexplainedMsat: spentMsat - answeredMsat,
  };
}

/** One fault as it ran. */
export interface FaultRun extends Fault {
  /** When it really started (after the previous fault finished), ms after the load started. */
  startedMs: number;
  tookMs: number;
  /** Why it failed (a restart that did not come back), if it did. */
  error?: string;
}

export interface LedgerOutcome {
  ok: boolean;
  accounts?: number;
  transfers?: number;
  problems?: { code: string; detail: string }[];
  error?: string;
}

export interface ChaosInput {
  startedAt: string;
  minutes: number;
  seed: number;
  clients: number;
  /** The router's RESERVATION_TIMEOUT_S: when holds a killed router left behind expire. */
  reservationTimeoutS: number;
  /** Where router, settlement and wallet fleet keep their data. */
  database: 'pglite' | 'postgres';
  model: string;
  durationMs: number;
  planned: number;
  faults: FaultRun[];
  requests: { ok: number; failed: number; failuresByCode: Record<string, number> };
  reconciliation: Reconciliation;
  finalReservedMsat: number | null;
  nodesServing: number | null;
  nodes: number;
  ledger: LedgerOutcome;
}

interface ChaosChecks {
  ledgerBalanced: boolean;
  noChargeWithoutAnswer: boolean;
  everyAnswerChargedOnce: boolean;
  noLeakedReservation: boolean;
  breakersClosed: boolean;
  everyFaultRecovered: boolean;
  someAnswers: boolean;
  all: boolean;
}

export interface ChaosReport extends ChaosInput {
  faultsByKind: Record<string, number>;
  checks: ChaosChecks;
}

export function buildChaosReport(input: ChaosInput): ChaosReport {
  const r = input.reconciliation;
  const faultsByKind: Record<string, number> = {};
  for (const f of input.faults) {
    const key = f.kind === 'kill-restart' ? `kill-restart ${f.target}` : f.kind;
    faultsByKind[key] = (faultsByKind[key] ?? 0) + 1;
  }
  const checks = {
    ledgerBalanced: input.ledger.ok,
    noChargeWithoutAnswer:
      r.chargedWithoutAnswer === 0 && r.chargedWrongAmount === 0 && r.unexplainedMsat <= 0,
    // Every received receipt charged once: the tab lost exactly what the answers cost, no duplicate,
    // and every answer's charge seen (unless a look may have missed it; the sum still decides).
    everyAnswerChargedOnce:
      r.duplicateCharges === 0 &&
      r.unexplainedMsat === 0 &&
      (r.answersNotSeenCharged === 0 || r.chargeLookGaps > 0),
    noLeakedReservation: input.finalReservedMsat === 0,
    breakersClosed: input.nodesServing === input.nodes,
    everyFaultRecovered: input.faults.every((f) => f.error === undefined),
    someAnswers: r.answers > 0,
  };
  return { ...input, faultsByKind, checks: { ...checks, all: Object.values(checks).every(Boolean) } };
}

const yes = (value: boolean) => (value ? 'yes' : 'NO');
const list = (record: Record<string, number>) =>
  Object.entries(record)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, n]) => `${key} ${n}`)
    .join(', ') || 'none';

/** The report as Markdown: the run, the faults, the requests, the money and the checks. */
export function formatChaosReport(report: ChaosReport): string {
  const r = report.reconciliation;
  const c = report.checks;
  const failedFaults = report.faults.filter((f) => f.error !== undefined);
  const lines = [
    `Chaos: ${report.minutes} min from ${report.startedAt}, seed ${report.seed}, ${report.clients} clients, model ${report.model}, database ${report.database}, router RESERVATION_TIMEOUT_S ${report.reservationTimeoutS}`,
    '',
    `Faults: ${report.faults.length} of ${report.planned} planned (${list(report.faultsByKind)})` +
      failedFaults
        .map((f) => `; FAILED ${f.kind} ${f.target} at ${Math.round(f.startedMs / 1000)} s: ${f.error}`)
        .join(''),
    `Requests: ${report.requests.ok} ok, ${report.requests.failed} failed (${list(report.requests.failuresByCode)})`,
    '',
    '| check | result | detail |',
    '|---|---|---|',
    `| ledger verify balanced | ${yes(c.ledgerBalanced)} | ${
      report.ledger.error
        ? `could not run: ${report.ledger.error}`
        : `${report.ledger.accounts} accounts, ${report.ledger.transfers} transfers${(report.ledger.problems ?? []).map((p) => `; ${p.code}: ${p.detail}`).join('')}`
    } |`,
    `| no charge without an answer | ${yes(c.noChargeWithoutAnswer)} | ${r.chargesSeen} charges seen: ${r.chargedWithoutAnswer} without an answer, ${r.chargedWrongAmount} at another amount than the signed cost; tab spent ${r.spentMsat} msat for answers costing ${r.answeredMsat} msat (difference ${r.unexplainedMsat}) |`,
    `| every received receipt charged once | ${yes(c.everyAnswerChargedOnce)} | ${r.answers} answers with a receipt, ${r.answersNotSeenCharged} not seen charged, ${r.duplicateCharges} duplicate charges, ${r.chargeLookGaps} tab looks that may have missed charges |`,
    `| no leaked reservation | ${yes(c.noLeakedReservation)} | reserved_msat at the end: ${report.finalReservedMsat ?? 'unknown'} |`,
    `| breakers not stuck | ${yes(c.breakersClosed)} | nodes serving at the end: ${report.nodesServing ?? 'unknown'} of ${report.nodes} |`,
    `| every fault recovered | ${yes(c.everyFaultRecovered)} | ${failedFaults.length} failed |`,
    `| some answers | ${yes(c.someAnswers)} | ${r.answers} |`,
    `| all | ${yes(c.all)} | |`,
  ];
  return `${lines.join('\n')}\n`;
}
