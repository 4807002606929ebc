// The router's pages: its nodes (health, breaker, price, load, what they served lately) and the
// recent requests (metadata only: the router never keeps prompts or outputs).

import type { RecentRequest } from '../src/wire';
import { ago, badge, h, sats, short, table } from './dom';
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

export const routerPages: Page[] = [nodesPage, requestsPage];
export const routerWhoami = '/admin/dashboard/whoami';
