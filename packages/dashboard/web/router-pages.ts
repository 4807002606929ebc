// The router's pages: its nodes (health, breaker, price, load, what they served lately), the
// recent requests (metadata only: the router never keeps prompts or outputs), the money (fees,
// tabs, payouts: settlement's overview, read by the router) and the federation (relays, peers).

import { ago, sats } from '../src/format';
import type { FederationAnswer, MoneyAnswer, RecentRequest } from '../src/wire';
import { badge, h, short, table } from './dom';
import type { Page } from './main';

interface NodeRow {
  id: string;
  endpoint: string;
  region: string | null;
  models: { id: string; input_msat_per_1k: number; output_msat_per_1k: number; context_window: number }[];
  serving: boolean;
  banned: boolean;
  on_probation: boolean;
  breaker: string;
  success_rate: number;
  ttft_ms: number | null;
  tokens_per_s: number | null;
  in_flight: number;
  free_slots: number | null;
  queue_depth: number | null;
  last_seen_ms_ago: number;
  recent_requests: number;
  recent_earned_msat: number;
}

const breakerKind = (state: string) => (state === 'closed' ? 'ok' : state === 'open' ? 'bad' : 'warn');

const nodesPage: Page = {
  id: 'nodes',
  title: 'Nodes',
  async render(call) {
    const { nodes, total } = await call<{ nodes: NodeRow[]; total: number }>('GET', '/admin/dashboard/nodes');
    const rows = nodes.map((n) => [
      h('code', { title: n.id }, short(n.id)),
      n.endpoint,
      n.models.map((m) => m.id).join(', '),
      n.models.map((m) => `${sats(m.input_msat_per_1k)} / ${sats(m.output_msat_per_1k)}`).join(', '),
      n.banned
        ? badge('banned', 'bad')
        : n.serving
          ? badge(n.on_probation ? 'serving (probation)' : 'serving', 'ok')
          : badge('not serving', 'bad'),
      badge(n.breaker, breakerKind(n.breaker)),
      `${Math.round(n.success_rate * 100)} %`,
      n.tokens_per_s === null ? '–' : `${n.tokens_per_s.toFixed(1)} tok/s`,
      `${n.in_flight}${n.free_slots === null ? '' : ` (${n.free_slots} free)`}`,
      String(n.recent_requests),
      sats(n.recent_earned_msat),
      ago(n.last_seen_ms_ago),
    ]);
    return h(
      'section',
      {},
      h('p', { class: 'lead' }, `${total} node${total === 1 ? '' : 's'} registered with this router.`),
      table(
        'nodes',
        [
          'Node',
          'Endpoint',
          'Models',
          'Price in / out per 1k',
          'State',
          'Breaker',
          'Success',
          'Throughput',
          'In flight',
          'Recent req.',
          'Recent earned',
          'Heartbeat',
        ],
        rows,
        'No node has registered yet.',
      ),
    );
  },
};

const requestsPage: Page = {
  id: 'requests',
  title: 'Recent requests',
  async render(call) {
    const { requests, capacity } = await call<{ requests: RecentRequest[]; capacity: number }>(
      'GET',
      '/admin/dashboard/requests?limit=100',
    );
    const now = Date.now();
    const rows = requests.map((r) => [
      ago(Math.max(0, now - r.at_ms)),
      r.model,
      r.node ? h('code', { title: r.node }, short(r.node)) : '–',
      r.outcome === 'OK' ? badge('OK', 'ok') : badge(r.outcome, 'bad'),
      sats(r.cost_msat),
      sats(r.reserved_msat),
      `${r.tokens_in} / ${r.tokens_out}`,
      `${r.latency_ms} ms`,
      String(r.attempts),
      r.receipt_id
        ? h('code', { title: r.receipt_id, 'data-testid': 'receipt-id' }, short(r.receipt_id))
        : '–',
    ]);
    return h(
      'section',
      {},
      h(
        'p',
        { class: 'lead' },
        `The last ${capacity} requests this router served are kept in memory (metadata only: never prompts or outputs).`,
      ),
      table(
        'requests',
        [
          'When',
          'Model',
          'Node',
          'Outcome',
          'Cost',
          'Reserved',
          'Tokens in / out',
          'Latency',
          'Attempts',
          'Receipt',
        ],
        rows,
        'No request since the router started.',
      ),
    );
  },
};

/** A row of figures: label above value, each with a test id. */
function figures(items: [label: string, value: string, testId: string][]): HTMLElement {
  return h(
    'dl',
    { class: 'figures' },
    ...items.map(([label, value, testId]) =>
      h('div', {}, h('dt', {}, label), h('dd', { 'data-testid': testId }, value)),
    ),
  );
}

const payoutKind = (state: string) => (state === 'succeeded' ? 'ok' : state === 'failed' ? 'bad' : 'warn');

const moneyPage: Page = {
  id: 'money',
  title: 'Money',
  async render(call) {
    const { overview } = await call<MoneyAnswer>('GET', '/admin/dashboard/money?limit=20');
    if (!overview)
      return h(
        'p',
        { class: 'lead', 'data-testid': 'money-free' },
        'This router serves for free (no SETTLEMENT_URL): there are no fees, tabs or payouts.',
      );
    const { fees, tabs, payouts } = overview;
    const now = Date.now();
    return h(
      'section',
      {},
      h('h3', {}, 'Fees'),
      figures([
        ['Router fees held', sats(fees.router_fees_msat), 'fees-held'],
        ['Requests, last 24 h', String(fees.last_24h.requests), 'fees-requests'],
        ['Charged, last 24 h', sats(fees.last_24h.charged_msat), 'fees-charged'],
        ['To nodes, last 24 h', sats(fees.last_24h.node_msat), 'fees-nodes'],
        ['Router fees, last 24 h', sats(fees.last_24h.router_msat), 'fees-router'],
      ]),
      h('h3', {}, 'Tabs'),
      figures([
        ['Tabs', String(tabs.count), 'tabs-count'],
        ['Spendable', sats(tabs.balance_msat), 'tabs-balance'],
        ['Reserved now', sats(tabs.reserved_msat), 'tabs-reserved'],
      ]),
      table(
        'tabs',
        ['Payer', 'Spendable', 'Reserved'],
        tabs.largest.map((t) => [
          h('code', { title: t.payer }, short(t.payer)),
          sats(t.balance_msat),
          sats(t.reserved_msat),
        ]),
        'No tab holds anything yet.',
      ),
      h('h3', {}, 'Payouts'),
      figures([
        ['Nodes with earnings', String(payouts.owed.count), 'owed-nodes'],
        ['Owed to nodes', sats(payouts.owed.balance_msat), 'owed-balance'],
        ['Held for payouts in flight', sats(payouts.owed.reserved_msat), 'owed-held'],
      ]),
      table(
        'payouts',
        ['When', 'Node', 'State', 'Amount', 'Routing fee', 'Payout'],
        payouts.recent.map((p) => [
          ago(Math.max(0, now - p.created_at_s * 1000)),
          h('code', { title: p.node }, short(p.node)),
          badge(p.state, payoutKind(p.state)),
          sats(p.amount_msat),
          p.fee_msat === null ? '–' : sats(p.fee_msat),
          h('code', {}, p.payout_id),
        ]),
        'No payout yet: nodes are paid once their earnings pass the threshold and they name a destination.',
      ),
    );
  },
};

const federationPage: Page = {
  id: 'federation',
  title: 'Federation',
  async render(call) {
    const { enabled, relays, peers, total } = await call<FederationAnswer>(
      'GET',
      '/admin/dashboard/federation',
    );
    if (!enabled)
      return h(
        'p',
        { class: 'lead', 'data-testid': 'federation-off' },
        'Federation is off (FEDERATION_RELAYS is empty): this router neither announces itself nor sees peers.',
      );
    return h(
      'section',
      {},
      h('h3', {}, 'Relays'),
      table(
        'relays',
        ['Relay', 'State'],
        relays.map((r) => [r.url, r.connected ? badge('connected', 'ok') : badge('not connected', 'bad')]),
        'No relay configured.',
      ),
      h('h3', {}, 'Peers'),
      h('p', { class: 'lead' }, `${total} router${total === 1 ? '' : 's'} seen on the relays.`),
      table(
        'peers',
        [
          'Router',
          'Name',
          'URL',
          'Policy',
          'Models',
          'Price in / out per 1k',
          'Load',
          'Answered / failed',
          'Last seen',
        ],
        peers.map((p) => [
          h('code', { title: p.pubkey }, short(p.pubkey)),
          p.name ?? '–',
          p.url ?? '–',
          p.allowed ? badge(`peer (trust ${p.trust})`, 'ok') : badge('not allowed', 'warn'),
          p.models.map((m) => m.id).join(', ') || '–',
          p.models.map((m) => `${sats(m.input_msat_per_1k)} / ${sats(m.output_msat_per_1k)}`).join(', ') ||
            '–',
          p.status
            ? `${p.status.nodes_online} nodes, ${p.status.free_slots} free${p.status.accepting_offload ? '' : ', no offload'}`
            : '–',
          `${p.answered} / ${p.failed}${p.disputes ? ` (${p.disputes} disputed)` : ''}`,
          ago(p.last_seen_ms_ago),
        ]),
        'No peer router has announced itself on these relays yet.',
      ),
    );
  },
};

export const routerPages: Page[] = [nodesPage, requestsPage, moneyPage, federationPage];
export const routerWhoami = '/admin/dashboard/whoami';
