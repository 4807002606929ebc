// Captures drawn from spending leases, charged per batch (issue 15). The requests of one ledger
// batch that draw from the same lease move their money in one transfer per receiving account (each
// node's earnings, the router fees) instead of two transfers per request. What each request was
// charged stays in its own charge row, written in the same transaction, and a retry is known by
// that row (its key is the op id: `sameCharge`) instead of by a per-request transfer id. Pure.
import type { TransferInput } from '@fed-ai/ledger';

/** One capture whose bound was drawn from a lease. */
export interface LeaseCapture {
  opId: string;
  /** The lease's ledger account the parts are paid from. */
  leaseAccount: string;
  /** The tab charged, the node, and the whole charge: what a charge row already there must match. */
  tab: string;
  node: string;
  amountMsat: number;
  /** Where the charge goes (the node's earnings, the router fee); zero parts move nothing. */
  parts: readonly ChargePart[];
}

/** One part of a charge: `id` is its own transfer id, used when it is paid request by request. */
export interface ChargePart {
  id: string;
  account: string;
  amountMsat: number;
}

/** A charge row already written for an op id (a retry, or another path charged it). */
export interface ExistingCharge {
  account: string;
  node: string;
  amountMsat: number;
}

type LeaseCaptureFate =
  /** Paid by its lease's transfers in this batch (group: index into `groups`). */
  | { kind: 'group'; group: number }
  /** The same op id earlier in this batch: the same charge follows that one, a different one is refused. */
  | { kind: 'duplicate'; of: number; same: boolean };

export interface LeaseChargePlan {
  /** One linked chain per lease: one transfer per receiving account, with the sum of its parts. */
  transfers: TransferInput[];
  /** Per lease: its chain's range in `transfers` ([from, to)) and the captures it pays (indexes). */
  groups: { leaseAccount: string; from: number; to: number; captures: number[] }[];
  /** Per capture, in order. */
  fates: LeaseCaptureFate[];
}

/** Whether a charge row already written is this charge: the same tab, node and amount. */
export const sameCharge = (c: Pick<LeaseCapture, 'tab' | 'node' | 'amountMsat'>, e: ExistingCharge) =>
  e.account === c.tab && e.node === c.node && e.amountMsat === c.amountMsat;

/**
 * Plans a batch's lease captures not charged yet (the caller answers those whose op id has a
 * charge row already); `batchId` makes the transfer ids (`lc:<batch>:<group>:<n>`) unique to it.
 */
export function planLeaseCharges(batchId: string, captures: readonly LeaseCapture[]): LeaseChargePlan {
  const fates: LeaseCaptureFate[] = [];
  const firstIndex = new Map<string, number>();
  const byLease = new Map<string, { captures: number[]; sums: Map<string, number> }>();
  captures.forEach((capture, i) => {
    const first = firstIndex.get(capture.opId);
    if (first !== undefined) {
      const earlier = captures[first]!;
      const same =
        earlier.leaseAccount === capture.leaseAccount &&
        sameCharge(capture, { account: earlier.tab, node: earlier.node, amountMsat: earlier.amountMsat });
      fates.push({ kind: 'duplicate', of: first, same });
    } else {
      firstIndex.set(capture.opId, i);
      let group = byLease.get(capture.leaseAccount);
      if (!group) {
        group = { captures: [], sums: new Map() };
        byLease.set(capture.leaseAccount, group);
      }
      group.captures.push(i);
      for (const part of capture.parts)
        if (part.amountMsat > 0)
          group.sums.set(part.account, (group.sums.get(part.account) ?? 0) + part.amountMsat);
      fates.push({ kind: 'group', group: -1 });
    }
  });
  const transfers: TransferInput[] = [];
  const groups: LeaseChargePlan['groups'] = [];
  for (const [leaseAccount, group] of byLease) {
    const g = groups.length;
    const from = transfers.length;
    let n = 0;
    for (const [account, amountMsat] of group.sums)
      transfers.push({
        id: `lc:${batchId}:${g}:${n++}`,
        kind: 'single',
        debitAccountId: leaseAccount,
        creditAccountId: account,
        amountMsat,
        userData: batchId,
        linked: true,
      });
    // The chain ends at its last transfer: the lease's captures go together or not at all.
    const last = transfers[transfers.length - 1];
    if (transfers.length > from && last) last.linked = false;
    groups.push({ leaseAccount, from, to: transfers.length, captures: group.captures });
    for (const i of group.captures) fates[i] = { kind: 'group', group: g };
  }
  return { transfers, groups, fates };
}
