// L402 end to end (docs/l402.md): settlement (ledger + internal Lightning) + a router in paid mode
// with L402_ENABLED + a signing node, on 127.0.0.1. The client's wallet is a settlement account
// (SettlementAccountBackend) funded from the faucet: its payInvoice returns the preimage.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import { SettlementAccountBackend } from '@fed-ai/lightning';
import {
  createNip98Header,
  FedAiError,
  generateSecretKey,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { fetchWithL402 } from '@getalby/lightning-tools/402/l402';
import fc from 'fast-check';
import { settlementConfigSchema } from '../../settlement/src/config';
import { type RunningSettlement, startSettlement } from '../../settlement/src/settlement';
import { routerConfigSchema } from '../src/config';
import { l402RootKey, mintL402Macaroon, parseL402Authorization, verifyL402 } from '../src/l402';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-l402-'));
const routerKey = generateSecretKey();
const walletKey = generateSecretKey();
const rootKey = l402RootKey(routerKey);
let settlement: RunningSettlement;
let router: RunningRouter;
let freeRouter: RunningRouter;
let wallet: SettlementAccountBackend;
const node = new SigningNodeDouble();
// 2,500 msat per output token, input free: max_tokens 4 costs at most 10,000 msat (the minimum
// credit), max_tokens 1 at most 2,500. The double answers 4 tokens.
const MIN_CREDIT_MSAT = 10_000;
/** The other tests issue fewer challenges than this from 127.0.0.1; the limit test uses 127.0.0.2. */
const CHALLENGES_PER_MIN = 10;

const routerConfig = (name: string, extra: Record<string, string>) =>
  routerConfigSchema.parse({
    ROUTER_PORT: '0',
    ROUTER_KEY: secretKeyHex(routerKey),
    DATA_DIR: join(dir, name),
    ALLOW_PRIVATE_ENDPOINTS: 'true',
    L402_ENABLED: 'true',
    L402_MIN_CREDIT_MSAT: String(MIN_CREDIT_MSAT),
    ...extra,
  });

before(async () => {
  // The free router starts while settlement does (each opens its own database).
  [settlement, freeRouter] = await Promise.all([
    startSettlement(
      settlementConfigSchema.parse({
        SETTLEMENT_PORT: '0',
        DATA_DIR: join(dir, 'settlement'),
        SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
        SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(walletKey),
        FAUCET: 'true',
        ROUTER_FEE_BPS: '1000',
      }),
    ),
    startRouter(routerConfig('free', {})),
  ]);
  router = await startRouter(
    routerConfig('router', {
      SETTLEMENT_URL: settlement.url,
      L402_CHALLENGES_PER_IP_PER_MIN: String(CHALLENGES_PER_MIN),
    }),
  );
  node.price = { input_msat_per_1k: 0, output_msat_per_1k: 2_500_000 };
  await node.start();
  assert.equal((await node.register(router.url, router.pubkey)).status, 200);
  // Fund the client's wallet: an invoice of its account, paid by the faucet.
  wallet = new SettlementAccountBackend({ url: settlement.url, secretKey: walletKey });
  const funding = await wallet.createInvoice({
    amountMsat: 1_000_000,
    description: 'l402 test',
    expirySeconds: 600,
  });
  const url = `${settlement.url}/v1/faucet/pay`;
  const body = JSON.stringify({ bolt11: funding.bolt11 });
  const paid = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', body, routerKey),
    },
    body,
  });
  assert.equal(paid.status, 200);
});

after(async () => {
  await router.close();
  await freeRouter.close();
  await settlement.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const chatBody = (maxTokens: number) =>
  JSON.stringify({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: maxTokens,
  });

async function chat(baseUrl: string, authorization: string | undefined, maxTokens = 1) {
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: chatBody(maxTokens),
  });
  const json = (await response.json()) as {
    error?: { code: string; message: string };
    choices?: { message: { content: string } }[];
    fedai?: { cost_msat: number; receipt: { pubkey: string } };
  };
  return { status: response.status, challenge: response.headers.get('www-authenticate'), body: json };
}

/** An Aperture-style client: the 402's token and invoice, read by hand. */
function parseChallenge(header: string | null): { token: string; invoice: string } {
  assert.ok(header, 'a WWW-Authenticate challenge');
  assert.match(header, /^L402 version="0", /);
  const token = /\btoken="([^"]+)"/.exec(header)?.[1];
  const macaroon = /\bmacaroon="([^"]+)"/.exec(header)?.[1];
  const invoice = /\binvoice="([^"]+)"/.exec(header)?.[1];
  assert.ok(token && invoice);
  assert.equal(macaroon, token, 'macaroon= repeats token= for older clients');
  return { token, invoice };
}

/** A paid token: challenge, pay from the wallet, and the ids the token binds. */
async function paidToken(maxTokens = 1) {
  const refused = await chat(router.url, undefined, maxTokens);
  assert.equal(refused.status, 402);
  assert.equal(refused.body.error?.code, 'PAYMENT_REQUIRED');
  const { token, invoice } = parseChallenge(refused.challenge);
  const { preimage } = await wallet.payInvoice(invoice, { maxFeeMsat: 0 });
  const ids = verifyL402(rootKey, { token, preimage }, Math.floor(Date.now() / 1000));
  return { token, invoice, preimage, ...ids };
}

/** Captures run just after each answer: wait until the tab holds nothing. */
async function settledTab(payer: string) {
  for (let i = 0; i < 400; i++) {
    const tab = await settlement.books.tab(payer);
    if (tab.reserved_msat === 0) return tab;
    await new Promise((r) => setTimeout(r, 25));
  }
  return settlement.books.tab(payer);
}

async function topupCredits(paymentHash: string): Promise<number[]> {
  const rows = await settlement.ledger.db.query<{ amount_msat: string }>(
    'SELECT amount_msat FROM ledger_transfers WHERE id = $1',
    [`topup:${paymentHash}`],
  );
  return rows.rows.map((r) => Number(r.amount_msat));
}

async function assertMoney(payer: string, paymentHash: string, paidMsat: number) {
  assert.deepEqual(
    await topupCredits(paymentHash),
    [paidMsat],
    'the tab was credited the invoice amount once',
  );
  const tab = await settledTab(payer);
  const charges = tab.charges as { amount_msat: number; receipt: { pubkey: string; content: string } }[];
  for (const c of charges) {
    assert.equal(c.receipt.pubkey, node.pubkey, 'each charge rests on a node-signed record');
    assert.equal(c.amount_msat, JSON.parse(c.receipt.content).cost_msat, 'charged exactly the signed cost');
  }
  const charged = charges.reduce((sum, c) => sum + Number(c.amount_msat), 0);
  assert.equal(tab.balance_msat, paidMsat - charged);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
  return { tab, charged, charges };
}

test('fetchWithL402 (@getalby/lightning-tools, unmodified) pays the challenge; its credential reuses the credit', async () => {
  let payments = 0;
  const albyWallet = {
    payInvoice: async ({ invoice }: { invoice: string }) => {
      payments += 1;
      return { preimage: (await wallet.payInvoice(invoice, { maxFeeMsat: 0 })).preimage };
    },
  };
  const url = `${router.url}/v1/chat/completions`;
  const init = () => ({
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: chatBody(1),
  });
  const first = await fetchWithL402(url, init(), { wallet: albyWallet });
  assert.equal(first.status, 200);
  const answer = (await first.json()) as {
    choices: { message: { content: string } }[];
    fedai: { cost_msat: number };
  };
  assert.equal(answer.choices[0]?.message.content, 'Hello');
  assert.equal(answer.fedai.cost_msat, 2_500);
  assert.equal(payments, 1);
  assert.equal(first.payment?.paid, true);
  assert.equal(first.payment?.amount, MIN_CREDIT_MSAT / 1000, 'the minimum credit, in sat');
  const credentials = first.payment!.credentials;
  assert.match(credentials.value, /^L402 [A-Za-z0-9+/=]+:[0-9a-f]{64}$/);
  // The second request pays nothing: it draws on what the first left on the token's tab.
  const second = await fetchWithL402(url, init(), { wallet: albyWallet, credentials });
  assert.equal(second.status, 200);
  assert.equal(payments, 1, 'no second payment');
  const [, value = ''] = credentials.value.split(' ');
  const colon = value.lastIndexOf(':');
  const ids = verifyL402(
    rootKey,
    { token: value.slice(0, colon), preimage: value.slice(colon + 1) },
    Math.floor(Date.now() / 1000),
  );
  const { charged, charges } = await assertMoney(ids.payer, ids.paymentHash, MIN_CREDIT_MSAT);
  assert.equal(charges.length, 2);
  assert.equal(charged, 5_000);
});

test('an Aperture-style client: 402 with token= and invoice=, then L402 and LSAT schemes both answer', async () => {
  const paid = await paidToken(1);
  const l402 = await chat(router.url, `L402 ${paid.token}:${paid.preimage}`);
  assert.equal(l402.status, 200, JSON.stringify(l402.body));
  assert.equal(l402.body.fedai?.receipt.pubkey, node.pubkey);
  const lsat = await chat(router.url, `LSAT ${paid.token}:${paid.preimage}`);
  assert.equal(lsat.status, 200, JSON.stringify(lsat.body));
  // Streaming draws on the same credit.
  const stream = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `L402 ${paid.token}:${paid.preimage}` },
    body: JSON.stringify({
      model: 'double-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 1,
      stream: true,
    }),
  });
  assert.equal(stream.status, 200);
  assert.match(await stream.text(), /"cost_msat":2500[\s\S]*data: \[DONE\]/);
  const { tab } = await assertMoney(paid.payer, paid.paymentHash, MIN_CREDIT_MSAT);
  assert.equal(tab.balance_msat, MIN_CREDIT_MSAT - 3 * 2_500);
});

test('refusals: forged preimage, another token’s preimage, another root key, a changed caveat, expired', async () => {
  const a = await paidToken(1);
  const b = await paidToken(1);
  const expectRefusal = async (authorization: string, status: number, code: string) => {
    const r = await chat(router.url, authorization);
    assert.equal(r.status, status, `${code}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, code);
    assert.ok(!r.body.error?.message.includes(a.preimage), 'the message never carries the preimage');
    return r;
  };
  const forged = await expectRefusal(
    `L402 ${a.token}:${randomBytes(32).toString('hex')}`,
    401,
    'L402_BAD_PREIMAGE',
  );
  assert.equal(forged.challenge, null, 'a bad credential gets no new invoice');
  await expectRefusal(`L402 ${a.token}:${b.preimage}`, 401, 'L402_BAD_PREIMAGE');
  await expectRefusal(`L402 ${a.token}:not-hex`, 401, 'L402_BAD_PREIMAGE');
  const stranger = mintL402Macaroon({
    rootKey: l402RootKey(generateSecretKey()),
    paymentHash: a.paymentHash,
    tokenId: a.tokenId,
    expiresAtS: Math.floor(Date.now() / 1000) + 600,
  });
  await expectRefusal(`L402 ${stranger}:${a.preimage}`, 401, 'L402_BAD_TOKEN');
  // Change the expiry caveat in the serialized macaroon: the signature no longer holds.
  const bytes = Buffer.from(a.token, 'base64');
  const at = bytes.indexOf('expires=') + 'expires='.length;
  bytes.write('9'.repeat(10), at, 'latin1');
  await expectRefusal(`L402 ${bytes.toString('base64')}:${a.preimage}`, 401, 'L402_BAD_TOKEN');
  // Another token's payment hash in the caveat (same length): refused too.
  const swapped = Buffer.from(a.token, 'base64');
  swapped.write(b.paymentHash, swapped.indexOf('payment_hash=') + 'payment_hash='.length, 'latin1');
  await expectRefusal(`L402 ${swapped.toString('base64')}:${b.preimage}`, 401, 'L402_BAD_TOKEN');
  await expectRefusal(`L402 not-a-macaroon:${a.preimage}`, 401, 'L402_BAD_TOKEN');
  const expired = mintL402Macaroon({
    rootKey,
    paymentHash: a.paymentHash,
    tokenId: a.tokenId,
    expiresAtS: Math.floor(Date.now() / 1000) - 1,
  });
  const old = await expectRefusal(`L402 ${expired}:${a.preimage}`, 402, 'L402_EXPIRED');
  parseChallenge(old.challenge);
  // Nothing was charged by any refusal; both tokens still hold their whole credit.
  for (const t of [a, b]) {
    const { tab } = await assertMoney(t.payer, t.paymentHash, MIN_CREDIT_MSAT);
    assert.equal(tab.balance_msat, MIN_CREDIT_MSAT);
  }
});

test('a spent token: credit drawn to zero, then TOKEN_SPENT with a new challenge', async () => {
  const paid = await paidToken(4);
  const auth = `L402 ${paid.token}:${paid.preimage}`;
  const first = await chat(router.url, auth, 4);
  assert.equal(first.status, 200);
  assert.equal(first.body.fedai?.cost_msat, MIN_CREDIT_MSAT);
  await settledTab(paid.payer);
  const spent = await chat(router.url, auth, 1);
  assert.equal(spent.status, 402);
  assert.equal(spent.body.error?.code, 'TOKEN_SPENT');
  const fresh = parseChallenge(spent.challenge);
  assert.notEqual(fresh.token, paid.token);
  const { tab } = await assertMoney(paid.payer, paid.paymentHash, MIN_CREDIT_MSAT);
  assert.equal(tab.balance_msat, 0);
  // An API key without a tab is still refused as before (the key comes first, no challenge).
  const key = await router.createApiKey({ name: 'plain' });
  const keyed = await chat(router.url, `Bearer ${key.key}`);
  assert.equal(keyed.status, 402);
  assert.equal(keyed.body.error?.code, 'INSUFFICIENT_BALANCE');
  assert.equal(keyed.challenge, null);
  const badKey = await chat(router.url, 'Bearer fedai_sk_nope');
  assert.equal(badKey.status, 401);
  assert.equal(badKey.challenge, null);
});

test('challenges are rate-limited per client address (each one is an invoice)', async () => {
  // From another loopback address: its own window, apart from what the other tests used.
  for (let i = 0; i < CHALLENGES_PER_MIN; i++) assert.equal((await chatFrom('127.0.0.2')).status, 402);
  const limited = await chatFrom('127.0.0.2');
  assert.equal(limited.status, 429);
  assert.equal(limited.code, 'RATE_LIMITED');
  assert.equal(limited.challenge, undefined);
  // 127.0.0.1 is still served.
  assert.equal((await chat(router.url, undefined)).status, 402);
});

/** An unauthenticated chat request sent from `localAddress` (fetch cannot choose it). */
function chatFrom(localAddress: string): Promise<{ status: number; code?: string; challenge?: string }> {
  const url = new URL(router.url);
  const body = chatBody(1);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        localAddress,
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => {
          const header = res.headers['www-authenticate'];
          resolve({
            status: res.statusCode ?? 0,
            code: (JSON.parse(text) as { error?: { code: string } }).error?.code,
            ...(typeof header === 'string' ? { challenge: header } : {}),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('verifyL402 and the header parser: arbitrary input is refused with a reason code, never thrown otherwise', () => {
  const nowS = Math.floor(Date.now() / 1000);
  const genuine = mintL402Macaroon({
    rootKey,
    paymentHash: 'ab'.repeat(32),
    tokenId: 'cd'.repeat(32),
    expiresAtS: nowS + 60,
  });
  fc.assert(
    fc.property(
      fc.string({ maxLength: 300 }),
      fc.string({ maxLength: 80 }),
      fc.nat(400),
      (junk, preimage, cut) => {
        for (const token of [junk, genuine.slice(0, cut), `${genuine}${junk}`, genuine.replace(/A/g, junk)]) {
          try {
            verifyL402(rootKey, { token, preimage }, nowS);
            assert.fail('accepted');
          } catch (error) {
            assert.ok(error instanceof FedAiError, String(error));
            assert.ok(
              ['L402_BAD_TOKEN', 'L402_BAD_PREIMAGE', 'L402_EXPIRED'].includes(error.code),
              error.code,
            );
          }
        }
        const parsed = parseL402Authorization(`L402 ${junk}`);
        assert.ok(parsed === null || typeof parsed.token === 'string');
      },
    ),
    { numRuns: 300 },
  );
  assert.equal(parseL402Authorization('Bearer x'), null);
  assert.deepEqual(parseL402Authorization('lsat a:b'), { token: 'a', preimage: 'b' });
});

test('free mode (no settlement): no credentials still answer 401 UNAUTHORIZED, L402 is off', async () => {
  const r = await chat(freeRouter.url, undefined);
  assert.equal(r.status, 401);
  assert.equal(r.body.error?.code, 'UNAUTHORIZED');
  assert.equal(r.challenge, null);
  const paid = await chat(freeRouter.url, `L402 x:${'0'.repeat(64)}`);
  assert.equal(paid.status, 401);
  assert.equal(paid.body.error?.code, 'UNAUTHORIZED');
});
