// The local network's demo agent wallet: an owner (./data/owner.key) with one agent wallet under an
// example policy, funded from the devnet faucet through the owner's treasury, and one NWC
// connection whose secret is kept in ./data/agent-nwc.json (mode 0600) so a restart reuses it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { DEFAULT_POLICY } from './wallet';

const DEMO_AGENT_POLICY = {
  version: 1,
  mode: 'live',
  maxPaymentMsat: 100_000,
  budgets: [{ id: 'daily', limitMsat: 500_000, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } }],
  maxPayments: { count: 120, windowS: 60 },
  approvalAboveMsat: 50_000,
  methods: DEFAULT_POLICY.methods,
} as const;

const AGENT_NAME = 'demo-agent';
const FUND_MSAT = 300_000;

export interface DemoAgent {
  walletId: string;
  balanceMsat: number;
  nwcUri: string;
}

interface Saved {
  wallet_id: string;
  client_pubkey: string;
  secret: string;
}

export async function setupDemoAgent(o: {
  dir: string;
  fleetUrl: string;
  fleetPubkey: string;
  relayUrl: string;
  ownerKey: Uint8Array;
  routerUrl: string;
  apiKey: string;
}): Promise<DemoAgent> {
  const call = async (
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<Record<string, unknown>> => {
    const url = `${o.fleetUrl}${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    const response = await fetch(url, {
      method,
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(url, method, text, o.ownerKey),
      },
      ...(text === undefined ? {} : { body: text }),
      signal: AbortSignal.timeout(10_000),
    });
    const json = (await response.json()) as Record<string, unknown>;
    if (!response.ok)
      throw new Error(`wallet fleet ${method} ${path}: ${JSON.stringify(json).slice(0, 300)}`);
    return json;
  };
  const wallets = (await call('GET', '/v1/wallets')).wallets as { id: string; name: string }[];
  const walletId =
    wallets.find((w) => w.name === AGENT_NAME)?.id ??
    String((await call('POST', '/v1/wallets', { name: AGENT_NAME, policy: DEMO_AGENT_POLICY })).id);
  let balanceMsat = Number((await call('GET', `/v1/wallets/${walletId}`)).balance_msat);
  if (balanceMsat < FUND_MSAT / 2) {
    await fundTreasury(call, o.routerUrl, o.apiKey);
    await call('POST', `/v1/wallets/${walletId}/fund`, {
      amount_msat: FUND_MSAT,
      op_id: `devnet-${Date.now()}`,
    });
    balanceMsat = Number((await call('GET', `/v1/wallets/${walletId}`)).balance_msat);
  }
  const saved = await connection(o.dir, walletId, call);
  const nwcUri = `nostr+walletconnect://${o.fleetPubkey}?relay=${encodeURIComponent(o.relayUrl)}&secret=${saved.secret}`;
  return { walletId, balanceMsat, nwcUri };
}

/** The saved connection if it still belongs to this wallet's fleet, else a new one (saved 0600). */
async function connection(
  dir: string,
  walletId: string,
  call: (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<Record<string, unknown>>,
): Promise<Saved> {
  const path = resolve(dir, 'agent-nwc.json');
  if (existsSync(path)) {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Saved;
    if (
      saved.wallet_id === walletId &&
      publicKeyOf(Uint8Array.from(Buffer.from(saved.secret, 'hex'))) === saved.client_pubkey
    )
      return saved;
  }
  const made = await call('POST', `/v1/wallets/${walletId}/connections`, { name: 'devnet agent' });
  const secret =
    new URL(String(made.uri).replace('nostr+walletconnect:', 'http:')).searchParams.get('secret') ?? '';
  const saved: Saved = { wallet_id: walletId, client_pubkey: String(made.client_pubkey), secret };
  writeFileSync(path, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o600 });
  return saved;
}

/** A treasury invoice paid by the devnet faucet (through the router, with the devnet API key). */
async function fundTreasury(
  call: (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<Record<string, unknown>>,
  routerUrl: string,
  apiKey: string,
): Promise<void> {
  const before = Number((await call('GET', '/v1/treasury')).balance_msat);
  const invoice = await call('POST', '/v1/treasury/invoices', { amount_msat: FUND_MSAT });
  const paid = await fetch(`${routerUrl}/v1/tabs/faucet`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ bolt11: invoice.bolt11 }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!paid.ok) throw new Error(`devnet faucet: HTTP ${paid.status} ${(await paid.text()).slice(0, 200)}`);
  // The fleet's sweeper credits the paid invoice (about once a second).
  for (let i = 0; i < 150; i++) {
    if (Number((await call('GET', '/v1/treasury')).balance_msat) >= before + FUND_MSAT) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the wallet fleet did not see the treasury invoice paid within 30 s');
}
