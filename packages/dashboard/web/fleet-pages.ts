// The wallet fleet's pages: wallets with their policy, the approvals inbox (approve / deny), and
// the switches (pause, kill, revive the whole fleet or one wallet).
import { ago, sats } from '../src/format';
import { badge, h, short, table } from './dom';
import type { Call, Page } from './main';

interface Policy {
  mode: string;
  maxPaymentMsat?: number;
  approvalAboveMsat?: number;
  budgets?: { id: string; limitMsat: number; period: { kind: string; unit?: string; windowS?: number } }[];
  methods?: string[];
}

interface WalletRow {
  id: string;
  name: string;
  group_id: string | null;
  status: string;
  effective_status: string;
  balance_msat: number;
  policy: Policy;
  policy_version: number;
}

interface SwitchRow {
  scope: string;
  status: string;
  updated_at_s: number;
}

interface PaymentRow {
  payment_hash: string;
  wallet_id: string;
  amount_msat: number;
  fee_msat: number | null;
  state: string;
  failure: string | null;
  created_at_s: number;
}

interface Overview {
  switches: SwitchRow[];
  wallets: WalletRow[];
  payments: PaymentRow[];
}

interface Approval {
  id: string;
  wallet_id: string;
  payment_hash: string;
  amount_msat: number | string;
  created_at_s: number | string;
  expires_at_s: number | string;
}

const statusKind = (s: string) => (s === 'active' ? 'ok' : s === 'paused' ? 'warn' : 'bad');

function policySummary(p: Policy): string {
  const parts = [p.mode];
  if (p.maxPaymentMsat !== undefined) parts.push(`cap ${sats(p.maxPaymentMsat)}`);
  if (p.approvalAboveMsat !== undefined) parts.push(`approval above ${sats(p.approvalAboveMsat)}`);
  for (const b of p.budgets ?? [])
    parts.push(
      `${b.id}: ${sats(b.limitMsat)} per ${b.period.kind === 'calendar' ? b.period.unit : `${b.period.windowS} s`}`,
    );
  return parts.join(' · ');
}

/** Buttons that act, then re-render the page (a failure shows in the page's error line). */
function action(label: string, testId: string, run: () => Promise<unknown>, refresh: () => void, kind = '') {
  return h(
    'button',
    {
      type: 'button',
      class: kind,
      'data-testid': testId,
      onclick: async (event: Event) => {
        (event.currentTarget as HTMLButtonElement).disabled = true;
        try {
          await run();
        } finally {
          refresh();
        }
      },
    },
    label,
  );
}

function switchButtons(call: Call, target: unknown, status: string, refresh: () => void, prefix: string) {
  const set = (to: string) => () => call('POST', '/v1/switches', { target, status: to });
  return h(
    'span',
    { class: 'buttons' },
    status !== 'paused' && status !== 'killed'
      ? action('Pause', `${prefix}-pause`, set('paused'), refresh)
      : null,
    status !== 'killed' ? action('Kill', `${prefix}-kill`, set('killed'), refresh, 'danger') : null,
    status !== 'active' ? action('Revive', `${prefix}-revive`, set('active'), refresh) : null,
  );
}

const walletsPage: Page = {
  id: 'wallets',
  title: 'Wallets',
  async render(call, refresh) {
    const overview = await call<Overview>('GET', '/v1/dashboard/overview');
    const fleet = overview.switches.find((s) => s.scope.startsWith('fleet:'));
    const fleetStatus = fleet?.status ?? 'active';
    const wallets = overview.wallets.map((w) => [
      w.name,
      h('code', {}, w.id),
      w.group_id ?? '–',
      badge(w.effective_status, statusKind(w.effective_status)),
      sats(w.balance_msat),
      `v${w.policy_version}: ${policySummary(w.policy)}`,
      switchButtons(call, { wallet: w.id }, w.status, refresh, `wallet-${w.id}`),
    ]);
    const payments = overview.payments.map((p) => [
      ago(Math.max(0, Date.now() - p.created_at_s * 1000)),
      h('code', {}, p.wallet_id),
      h('code', { title: p.payment_hash }, short(p.payment_hash)),
      sats(p.amount_msat),
      p.state === 'succeeded'
        ? badge('paid', 'ok')
        : p.state === 'sending'
          ? badge('sending', 'warn')
          : badge(p.failure ?? 'failed', 'bad'),
    ]);
    return h(
      'section',
      {},
      h(
        'div',
        { class: 'switchbar', 'data-testid': 'fleet-switch' },
        h('strong', {}, 'Whole fleet: '),
        h('span', { 'data-testid': 'fleet-status' }, badge(fleetStatus, statusKind(fleetStatus))),
        switchButtons(call, { fleet: true }, fleetStatus, refresh, 'fleet'),
      ),
      h('h2', {}, 'Wallets'),
      table(
        'wallets',
        ['Name', 'Id', 'Group', 'Status', 'Balance', 'Policy', 'Switch'],
        wallets,
        'No wallet yet.',
      ),
      h('h2', {}, 'Recent payments'),
      table('payments', ['When', 'Wallet', 'Payment hash', 'Amount', 'State'], payments, 'No payment yet.'),
    );
  },
};

const approvalsPage: Page = {
  id: 'approvals',
  title: 'Approvals',
  async render(call, refresh) {
    const { approvals } = await call<{ approvals: Approval[] }>('GET', '/v1/approvals');
    const rows = approvals.slice(0, 200).map((a) => [
      h('code', {}, a.id),
      h('code', {}, a.wallet_id),
      h('code', { title: a.payment_hash }, short(a.payment_hash)),
      sats(Number(a.amount_msat)),
      ago(Math.max(0, Date.now() - Number(a.created_at_s) * 1000)),
      h(
        'span',
        { class: 'buttons' },
        action(
          'Approve',
          `approve-${a.id}`,
          () => call('POST', `/v1/approvals/${a.id}/approve`),
          refresh,
          'primary',
        ),
        action('Deny', `deny-${a.id}`, () => call('POST', `/v1/approvals/${a.id}/deny`), refresh, 'danger'),
      ),
    ]);
    return h(
      'section',
      {},
      h(
        'p',
        { class: 'lead' },
        'Payments a policy challenged wait here. Approving lets that one invoice through once, when the agent pays it again.',
      ),
      table(
        'approvals',
        ['Approval', 'Wallet', 'Payment hash', 'Amount', 'Asked', ''],
        rows,
        'Nothing waits for you.',
      ),
    );
  },
};

export const fleetPages: Page[] = [walletsPage, approvalsPage];
export const fleetWhoami = '/v1/dashboard/whoami';
