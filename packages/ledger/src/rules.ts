// Posting rules of the double-entry ledger, modelled on TigerBeetle: pure functions over plain
// state. A batch of transfers is decided in order against the accounts it touches; linked chains
// apply all or nothing; a retried transfer id returns EXISTS and changes nothing.
// Amounts are integer millisatoshi.

export const ACCOUNT_FLAGS = {
  /** Debits (pending + posted) may never exceed posted credits: a balance that cannot go negative. */
  debitsMustNotExceedCredits: 1,
  /** Credits (pending + posted) may never exceed posted debits. */
  creditsMustNotExceedDebits: 2,
} as const;

export interface Account {
  id: string;
  flags: number;
  debitsPending: number;
  debitsPosted: number;
  creditsPending: number;
  creditsPosted: number;
}

export type TransferKind = 'single' | 'pending' | 'post' | 'void';

export interface TransferInput {
  /** Caller-chosen id: the idempotency key. */
  id: string;
  kind: TransferKind;
  debitAccountId: string;
  creditAccountId: string;
  amountMsat: number;
  /** For post/void: the pending transfer they resolve. */
  pendingId?: string | undefined;
  /** For pending: seconds until it expires (voided by the sweeper). */
  timeoutS?: number | undefined;
  /** Links this transfer to the next one in the batch: the chain applies all or nothing. */
  linked?: boolean | undefined;
  /** Reference: request id, payment hash, metering record id. */
  userData?: string | undefined;
}

export interface StoredTransfer extends TransferInput {
  createdAtS: number;
  expiresAtS: number | null;
  /** For pending transfers: how they ended. */
  resolution: 'posted' | 'voided' | 'expired' | null;
}

/**
 * One code per reason, as TigerBeetle: a caller (or a test) can tell every refusal apart.
 * Amount codes: AMOUNT_MUST_BE_INTEGER (not a safe integer), AMOUNT_MUST_NOT_BE_NEGATIVE,
 * AMOUNT_MUST_BE_POSITIVE (zero where a transfer must move money: single, pending, post),
 * EXCEEDS_PENDING_AMOUNT (a post of more than the pending holds), PENDING_AMOUNT_MISMATCH (a void
 * names an amount that is neither 0 nor the pending amount).
 */
export type TransferCode =
  | 'OK'
  | 'EXISTS'
  | 'EXISTS_WITH_DIFFERENT_FIELDS'
  | 'ACCOUNTS_MUST_BE_DIFFERENT'
  | 'AMOUNT_MUST_BE_INTEGER'
  | 'AMOUNT_MUST_NOT_BE_NEGATIVE'
  | 'AMOUNT_MUST_BE_POSITIVE'
  | 'DEBIT_ACCOUNT_NOT_FOUND'
  | 'CREDIT_ACCOUNT_NOT_FOUND'
  | 'EXCEEDS_CREDITS'
  | 'EXCEEDS_DEBITS'
  | 'OVERFLOWS_DEBITS'
  | 'OVERFLOWS_CREDITS'
  | 'PENDING_ID_REQUIRED'
  | 'TIMEOUT_REQUIRED'
  | 'PENDING_TRANSFER_NOT_FOUND'
  | 'PENDING_TRANSFER_NOT_PENDING'
  | 'PENDING_TRANSFER_ALREADY_POSTED'
  | 'PENDING_TRANSFER_ALREADY_VOIDED'
  | 'PENDING_TRANSFER_EXPIRED'
  | 'PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS'
  | 'EXCEEDS_PENDING_AMOUNT'
  | 'PENDING_AMOUNT_MISMATCH'
  | 'LINKED_EVENT_FAILED'
  | 'LINKED_EVENT_CHAIN_OPEN';

export interface TransferResult {
  id: string;
  code: TransferCode;
}

export interface LedgerState {
  accounts: Map<string, Account>;
  /** Existing transfers the batch may refer to (by id and by pending id). */
  transfers: Map<string, StoredTransfer>;
}

/** What a store writes: the same shape for a batch of transfers and for an expiry sweep. */
export interface LedgerWrites {
  /** Accounts whose balances changed (final values). */
  changedAccounts: Map<string, Account>;
  /** New transfers to insert. */
  created: StoredTransfer[];
  /** Existing pending transfers whose resolution changed. */
  resolved: Map<string, StoredTransfer['resolution']>;
}

export interface BatchOutcome extends LedgerWrites {
  results: TransferResult[];
}

const MAX = Number.MAX_SAFE_INTEGER;
export const MAX_BATCH = 8190; // as TigerBeetle: bounded batches

function sameFields(a: TransferInput, b: TransferInput): boolean {
  return (
    a.kind === b.kind &&
    a.debitAccountId === b.debitAccountId &&
    a.creditAccountId === b.creditAccountId &&
    a.amountMsat === b.amountMsat &&
    (a.pendingId ?? null) === (b.pendingId ?? null) &&
    (a.timeoutS ?? null) === (b.timeoutS ?? null) &&
    (a.userData ?? null) === (b.userData ?? null)
  );
}

function amountCode(t: TransferInput): TransferCode | null {
  if (!Number.isSafeInteger(t.amountMsat)) return 'AMOUNT_MUST_BE_INTEGER';
  if (t.amountMsat < 0) return 'AMOUNT_MUST_NOT_BE_NEGATIVE';
  if (t.amountMsat === 0 && t.kind !== 'void') return 'AMOUNT_MUST_BE_POSITIVE';
  return null;
}

/** Releases a pending transfer's hold on both accounts (void and expiry). */
function releaseHold(pending: StoredTransfer, debit: Account, credit: Account): void {
  debit.debitsPending -= pending.amountMsat;
  credit.creditsPending -= pending.amountMsat;
}

function debitRoom(a: Account, amount: number): boolean {
  if (!(a.flags & ACCOUNT_FLAGS.debitsMustNotExceedCredits)) return true;
  return a.debitsPending + a.debitsPosted + amount <= a.creditsPosted;
}

function creditRoom(a: Account, amount: number): boolean {
  if (!(a.flags & ACCOUNT_FLAGS.creditsMustNotExceedDebits)) return true;
  return a.creditsPending + a.creditsPosted + amount <= a.debitsPosted;
}

/**
 * Decides one transfer against a working copy of the state, mutating the copy on success.
 * Returns the result code; state is untouched unless the code is OK.
 */
/** What decide() needs of a table: read one row, write one row. */
interface Table<V> {
  get(id: string): V | undefined;
  set(id: string, value: V): void;
}

/**
 * A copy-on-read view over a table for one linked chain: rows are cloned the first time the chain
 * reads them, so a failed chain leaves the table untouched, and a chain costs what it touches
 * (copying every row per chain made a batch quadratic: 8,190 transfers took ~20 s).
 */
class ChainView<V> implements Table<V> {
  readonly touched = new Map<string, V | undefined>();

  constructor(
    private readonly base: Map<string, V>,
    private readonly clone: (v: V) => V,
  ) {}

  get(id: string): V | undefined {
    if (!this.touched.has(id)) {
      const row = this.base.get(id);
      this.touched.set(id, row === undefined ? undefined : this.clone(row));
    }
    return this.touched.get(id);
  }

  set(id: string, value: V): void {
    this.touched.set(id, value);
  }

  commit(): void {
    for (const [id, v] of this.touched) if (v !== undefined) this.base.set(id, v);
  }
}

function decide(
  t: TransferInput,
  accounts: Table<Account>,
  transfers: Table<StoredTransfer>,
  nowS: number,
  created: StoredTransfer[],
  resolved: Map<string, StoredTransfer['resolution']>,
): TransferCode {
  const existing = transfers.get(t.id);
  if (existing) return sameFields(existing, t) ? 'EXISTS' : 'EXISTS_WITH_DIFFERENT_FIELDS';
  const badAmount = amountCode(t);
  if (badAmount) return badAmount;

  if (t.kind === 'single' || t.kind === 'pending') {
    if (t.debitAccountId === t.creditAccountId) return 'ACCOUNTS_MUST_BE_DIFFERENT';
    const debit = accounts.get(t.debitAccountId);
    if (!debit) return 'DEBIT_ACCOUNT_NOT_FOUND';
    const credit = accounts.get(t.creditAccountId);
    if (!credit) return 'CREDIT_ACCOUNT_NOT_FOUND';
    if (t.kind === 'pending' && !(t.timeoutS && t.timeoutS > 0)) return 'TIMEOUT_REQUIRED';
    if (debit.debitsPending + debit.debitsPosted + t.amountMsat > MAX) return 'OVERFLOWS_DEBITS';
    if (credit.creditsPending + credit.creditsPosted + t.amountMsat > MAX) return 'OVERFLOWS_CREDITS';
    if (!debitRoom(debit, t.amountMsat)) return 'EXCEEDS_CREDITS';
    if (!creditRoom(credit, t.amountMsat)) return 'EXCEEDS_DEBITS';
    if (t.kind === 'single') {
      debit.debitsPosted += t.amountMsat;
      credit.creditsPosted += t.amountMsat;
    } else {
      debit.debitsPending += t.amountMsat;
      credit.creditsPending += t.amountMsat;
    }
    const stored: StoredTransfer = {
      ...t,
      createdAtS: nowS,
      expiresAtS: t.kind === 'pending' ? nowS + (t.timeoutS ?? 0) : null,
      resolution: null,
    };
    transfers.set(t.id, stored);
    created.push(stored);
    return 'OK';
  }

  // post / void resolve a pending transfer.
  if (!t.pendingId) return 'PENDING_ID_REQUIRED';
  const pending = transfers.get(t.pendingId);
  if (!pending) return 'PENDING_TRANSFER_NOT_FOUND';
  if (pending.kind !== 'pending') return 'PENDING_TRANSFER_NOT_PENDING';
  if (pending.resolution === 'posted') return 'PENDING_TRANSFER_ALREADY_POSTED';
  if (pending.resolution === 'voided') return 'PENDING_TRANSFER_ALREADY_VOIDED';
  const debit = accounts.get(pending.debitAccountId);
  if (!debit) return 'DEBIT_ACCOUNT_NOT_FOUND';
  const credit = accounts.get(pending.creditAccountId);
  if (!credit) return 'CREDIT_ACCOUNT_NOT_FOUND';
  if (pending.resolution === 'expired') return 'PENDING_TRANSFER_EXPIRED';
  if (expiryCode(pending, nowS) === 'EXPIRED') {
    // Expire it on the spot (as the sweeper would) and refuse the late post/void.
    releaseHold(pending, debit, credit);
    pending.resolution = 'expired';
    resolved.set(pending.id, 'expired');
    return 'PENDING_TRANSFER_EXPIRED';
  }
  if (t.debitAccountId !== pending.debitAccountId || t.creditAccountId !== pending.creditAccountId) {
    return 'PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS';
  }
  if (t.kind === 'post') {
    if (t.amountMsat > pending.amountMsat) return 'EXCEEDS_PENDING_AMOUNT';
    // Posting less than the pending amount releases the rest. Room was reserved by the pending.
    releaseHold(pending, debit, credit);
    debit.debitsPosted += t.amountMsat;
    credit.creditsPosted += t.amountMsat;
    pending.resolution = 'posted';
  } else {
    if (t.amountMsat !== 0 && t.amountMsat !== pending.amountMsat) return 'PENDING_AMOUNT_MISMATCH';
    releaseHold(pending, debit, credit);
    pending.resolution = 'voided';
  }
  resolved.set(pending.id, pending.resolution);
  const stored: StoredTransfer = { ...t, createdAtS: nowS, expiresAtS: null, resolution: null };
  transfers.set(t.id, stored);
  created.push(stored);
  return 'OK';
}

const cloneAccount = (a: Account): Account => ({ ...a });
const cloneTransfer = (t: StoredTransfer): StoredTransfer => ({ ...t });

/** Applies a batch in order. Unlinked transfers succeed or fail alone; linked chains all or nothing. */
export function applyBatch(state: LedgerState, batch: readonly TransferInput[], nowS: number): BatchOutcome {
  if (batch.length > MAX_BATCH) throw new RangeError(`batch of ${batch.length} exceeds ${MAX_BATCH}`);
  const accounts = new Map([...state.accounts].map(([id, a]) => [id, cloneAccount(a)]));
  const transfers = new Map([...state.transfers].map(([id, t]) => [id, cloneTransfer(t)]));
  const results: TransferResult[] = [];
  const created: StoredTransfer[] = [];
  const resolved = new Map<string, StoredTransfer['resolution']>();

  let i = 0;
  while (i < batch.length) {
    // A chain runs from i through the first transfer without `linked`.
    let end = i;
    while (end < batch.length && batch[end]!.linked) end += 1;
    if (end === batch.length) {
      for (let k = i; k < batch.length; k++)
        results.push({ id: batch[k]!.id, code: 'LINKED_EVENT_CHAIN_OPEN' });
      break;
    }
    const chain = batch.slice(i, end + 1);
    // Work on copies so a failed chain leaves nothing behind.
    const chainAccounts = new ChainView(accounts, cloneAccount);
    const chainTransfers = new ChainView(transfers, cloneTransfer);
    const chainCreated: StoredTransfer[] = [];
    const chainResolved = new Map<string, StoredTransfer['resolution']>();
    const codes: TransferCode[] = [];
    let failedAt = -1;
    for (const [k, t] of chain.entries()) {
      const code = decide(t, chainAccounts, chainTransfers, nowS, chainCreated, chainResolved);
      codes.push(code);
      if (code !== 'OK' && code !== 'EXISTS') {
        failedAt = k;
        break;
      }
    }
    if (failedAt === -1 || chain.length === 1) {
      // Success (or a single transfer's own verdict): keep the copies.
      if (failedAt === -1 || (chain.length === 1 && codes[0] === 'PENDING_TRANSFER_EXPIRED')) {
        chainAccounts.commit();
        chainTransfers.commit();
        created.push(...chainCreated);
        for (const [id, r] of chainResolved) resolved.set(id, r);
      }
      chain.forEach((t, k) => {
        results.push({ id: t.id, code: codes[k]! });
      });
    } else {
      chain.forEach((t, k) => {
        results.push({ id: t.id, code: k === failedAt ? codes[k]! : 'LINKED_EVENT_FAILED' });
      });
    }
    i = end + 1;
  }

  return { results, changedAccounts: changedFrom(state.accounts, accounts), created, resolved };
}

function changedFrom(before: Map<string, Account>, after: Map<string, Account>): Map<string, Account> {
  const changed = new Map<string, Account>();
  for (const [id, a] of after) {
    const b = before.get(id)!;
    if (
      b.debitsPending !== a.debitsPending ||
      b.debitsPosted !== a.debitsPosted ||
      b.creditsPending !== a.creditsPending ||
      b.creditsPosted !== a.creditsPosted
    ) {
      changed.set(id, a);
    }
  }
  return changed;
}

export type ExpiryCode =
  | 'EXPIRED'
  | 'NOT_DUE'
  | 'NO_TIMEOUT'
  | 'ALREADY_RESOLVED'
  | 'NOT_PENDING'
  | 'PENDING_TRANSFER_NOT_FOUND'
  | 'DEBIT_ACCOUNT_NOT_FOUND'
  | 'CREDIT_ACCOUNT_NOT_FOUND';

export interface ExpiryOutcome extends LedgerWrites {
  results: { id: string; code: ExpiryCode }[];
}

/** Whether a transfer is a pending one that must expire at `nowS` (EXPIRED), or why not. */
export function expiryCode(t: StoredTransfer, nowS: number): ExpiryCode {
  if (t.kind !== 'pending') return 'NOT_PENDING';
  if (t.resolution !== null) return 'ALREADY_RESOLVED';
  if (t.expiresAtS === null) return 'NO_TIMEOUT';
  return nowS >= t.expiresAtS ? 'EXPIRED' : 'NOT_DUE';
}

/**
 * Expires pending transfers past their deadline: releases each hold on both accounts and marks it
 * expired. The one rule for expiry: the sweeper and a late post/void both go through it. Transfers
 * not due (or resolved meanwhile) are left alone and say why.
 */
export function expireTransfers(state: LedgerState, ids: readonly string[], nowS: number): ExpiryOutcome {
  if (ids.length > MAX_BATCH) throw new RangeError(`expiry of ${ids.length} exceeds ${MAX_BATCH}`);
  const accounts = new Map([...state.accounts].map(([id, a]) => [id, cloneAccount(a)]));
  const resolved = new Map<string, StoredTransfer['resolution']>();
  const results: ExpiryOutcome['results'] = [];
  const seen = new Set<string>();
  for (const id of ids) {
    const stored = state.transfers.get(id);
    if (!stored) {
      results.push({ id, code: 'PENDING_TRANSFER_NOT_FOUND' });
      continue;
    }
    let code: ExpiryCode = seen.has(id) ? 'ALREADY_RESOLVED' : expiryCode(stored, nowS);
    const debit = accounts.get(stored.debitAccountId);
    const credit = accounts.get(stored.creditAccountId);
    if (code === 'EXPIRED' && !debit) code = 'DEBIT_ACCOUNT_NOT_FOUND';
    else if (code === 'EXPIRED' && !credit) code = 'CREDIT_ACCOUNT_NOT_FOUND';
    if (code === 'EXPIRED' && debit && credit) {
      releaseHold(stored, debit, credit);
      resolved.set(id, 'expired');
      seen.add(id);
    }
    results.push({ id, code });
  }
  return { results, changedAccounts: changedFrom(state.accounts, accounts), created: [], resolved };
}

export type InvariantCode = 'BALANCE_NOT_SAFE_INTEGER' | 'NEGATIVE_BALANCE' | 'FLAG_VIOLATED';

export interface InvariantProblem {
  code: InvariantCode;
  accountId: string;
  detail: string;
}

/**
 * What must hold for every account after every batch: balances are non-negative safe integers and
 * the account's flags hold. The store checks this inside the transaction and rolls back on a breach.
 */
export function accountInvariantProblems(a: Account): InvariantProblem[] {
  const problems: InvariantProblem[] = [];
  const fields = [
    ['debitsPending', a.debitsPending],
    ['debitsPosted', a.debitsPosted],
    ['creditsPending', a.creditsPending],
    ['creditsPosted', a.creditsPosted],
  ] as const;
  for (const [name, value] of fields) {
    if (!Number.isSafeInteger(value))
      problems.push({
        code: 'BALANCE_NOT_SAFE_INTEGER',
        accountId: a.id,
        detail: `${a.id}.${name} is ${value}`,
      });
    else if (value < 0)
      problems.push({ code: 'NEGATIVE_BALANCE', accountId: a.id, detail: `${a.id}.${name} is ${value}` });
  }
  if (
    a.flags & ACCOUNT_FLAGS.debitsMustNotExceedCredits &&
    a.debitsPending + a.debitsPosted > a.creditsPosted
  )
    problems.push({ code: 'FLAG_VIOLATED', accountId: a.id, detail: `${a.id}: debits exceed credits` });
  if (
    a.flags & ACCOUNT_FLAGS.creditsMustNotExceedDebits &&
    a.creditsPending + a.creditsPosted > a.debitsPosted
  )
    problems.push({ code: 'FLAG_VIOLATED', accountId: a.id, detail: `${a.id}: credits exceed debits` });
  return problems;
}

/** Balance an account holder can spend: credits minus all debits (pending included). */
export function availableMsat(a: Account): number {
  return a.creditsPosted - a.debitsPosted - a.debitsPending;
}

/** Which pending transfers the sweeper must expire now. */
export function dueForExpiry(transfers: Iterable<StoredTransfer>, nowS: number): StoredTransfer[] {
  return [...transfers].filter((t) => expiryCode(t, nowS) === 'EXPIRED');
}
