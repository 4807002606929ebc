// Ledger account ids and transfer ids of the wallet fleet. Every transfer id derives from what it
// is about (an invoice's payment hash, an owner's operation id), so a retry never moves money twice.

export const WF_ACCOUNTS = {
  /** Asset: what the fleet holds at its Lightning backend (its settlement account). */
  lightning: 'ln',
  /** Source of budget allowances and sink of budget spend (not money: allowance units in msat). */
  budgetSource: 'budget:source',
  budgetSpent: 'budget:spent',
  treasury: (owner: string) => `treasury:${owner}`,
  wallet: (walletId: string) => `wallet:${walletId}`,
  /** One allowance account per wallet, budget, calendar period and policy version. */
  budget: (walletId: string, budgetId: string, periodKey: string, policyVersion: number) =>
    `budget:${walletId}:${budgetId}:${periodKey}:v${policyVersion}`,
} as const;

export const WF_TRANSFERS = {
  /** An invoice of ours got paid: credit its wallet (or the owner's treasury). */
  incoming: (hash: string) => `in:${hash}`,
  /** Owner moves treasury -> wallet (op id chosen by the owner's client, or derived). */
  move: (opId: string) => `move:${opId}`,
  hold: (hash: string) => `hold:${hash}`,
  post: (hash: string) => `post:${hash}`,
  void: (hash: string) => `void:${hash}`,
  budgetHold: (hash: string, budgetId: string) => `bhold:${hash}:${budgetId}`,
  budgetPost: (hash: string, budgetId: string) => `bpost:${hash}:${budgetId}`,
  budgetVoid: (hash: string, budgetId: string) => `bvoid:${hash}:${budgetId}`,
  budgetFund: (account: string) => `bfund:${account}`,
} as const;
