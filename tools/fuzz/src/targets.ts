// Fuzz targets: each parser of untrusted input gets inputs from fast-check arbitraries mixed with
// mutations of valid inputs (bit flips, truncation, deep nesting, huge numbers, unicode). A target
// must never throw, must refuse with a reason code, and must never accept what a test key did not sign.
import {
  createEnvelope,
  createNip98Header,
  FedAiError,
  generateSecretKey,
  hexToBytes,
  KIND,
  MemoryReplayStore,
  PAYLOAD_SCHEMAS,
  type PayloadKind,
  publicKeyOf,
  sha256Hex,
  verifyEnvelope,
  verifyNip98,
} from '@fed-ai/protocol';
import { apiKeyCreateSchema } from '@fed-ai/router';
import fc from 'fast-check';
import type { z } from 'zod';
import { parseDvmJob } from '../../../services/router/src/federation/dvm';
import {
  l402RootKey,
  mintL402Macaroon,
  parseL402Authorization,
  verifyL402,
} from '../../../services/router/src/l402';
// Route modules are not re-exported by the package index; import the module itself.
import {
  nodesQuery as dashboardNodesQuery,
  requestsQuery as dashboardRequestsQuery,
} from '../../../services/router/src/routes/dashboard';
import { clientDisputeSchema } from '../../../services/router/src/routes/disputes';
import { openAiChatSchema } from '../../../services/router/src/routes/openai';
import {
  faucetSchema as tabFaucetSchema,
  topupSchema as tabTopupSchema,
} from '../../../services/router/src/routes/tabs';
import {
  accountInvoiceSchema as settlementAccountInvoiceSchema,
  accountPaymentSchema as settlementAccountPaymentSchema,
  paymentHashSchema as settlementPaymentHashSchema,
} from '../../../services/settlement/src/account-routes';
import { openDisputeSchema } from '../../../services/settlement/src/dispute-routes';
import { payoutDestinationSchema } from '../../../services/settlement/src/payouts';
import {
  faucetSchema as settlementFaucetSchema,
  refundSchema as settlementRefundSchema,
  topupSchema as settlementTopupSchema,
} from '../../../services/settlement/src/server';
import { overviewQuery as fleetOverviewQuery } from '../../../services/wallet-fleet/src/dashboard-routes';

export interface Verdict {
  /** 'accepted' or a refusal reason code. */
  outcome: string;
  /** Set when an accepted input was not signed by a test key (or is not an original signed input). */
  forgery?: string;
}

export interface Target {
  name: string;
  run(input: unknown): Promise<Verdict> | Verdict;
  /** Produces `count` inputs from a seeded stream. */
  inputs(count: number, rng: () => number): Iterable<unknown>;
  close?(): Promise<void>;
}

export const NOW_S = 1_800_000_000;
const testKeys = [generateSecretKey(), generateSecretKey()];
const testPubkeys = new Set(testKeys.map(publicKeyOf));
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);

/** Valid envelopes, signed by the test keys, that mutations start from. */
function validEnvelopes() {
  const [a, b] = testKeys as [Uint8Array, Uint8Array];
  const opts = { audience: router, nowS: NOW_S };
  return [
    createEnvelope(
      KIND.nodeHeartbeat,
      { free_slots: 1, queue_depth: 0, models_loaded: ['m'], ready: true },
      opts,
      a,
    ),
    createEnvelope(
      KIND.nodeRegistration,
      {
        endpoint: 'http://node.example:7100',
        models: [
          {
            id: 'm',
            context_window: 4096,
            max_output_tokens: 256,
            price: { input_msat_per_1k: 1, output_msat_per_1k: 2 },
          },
        ],
        capacity: { max_concurrency: 2, queue_max: 2 },
      },
      opts,
      b,
    ),
    createEnvelope(
      KIND.inferenceRequest,
      {
        request_id: 'request-0001',
        model: 'm',
        messages: [{ role: 'user', content: 'héllo 👋' }],
        max_tokens: 8,
        stream: false,
      },
      { ...opts, refs: ['request-0001'] },
      a,
    ),
  ];
}

// ---- mutation ---------------------------------------------------------------------------------

const UNICODE = ['\u0000', '\ud800', '\udfff', '\u202e', '\ufeff', '💥', '\u0301', 'é', '\\u0000', '\uffff'];
const HUGE = [
  '1e309',
  '-1e309',
  '9007199254740993',
  '-0',
  '1.5',
  '1e-400',
  '123456789012345678901234567890',
  'NaN',
];

function pick<T>(items: readonly T[], rng: () => number): T {
  return items[Math.floor(rng() * items.length)]!;
}

export function mutate(text: string, rng: () => number): string {
  let out = text;
  const rounds = 1 + Math.floor(rng() * 3);
  for (let r = 0; r < rounds; r++) {
    const at = Math.floor(rng() * (out.length + 1));
    switch (Math.floor(rng() * 9)) {
      case 0: {
        // bit flip
        if (out.length === 0) break;
        const i = Math.min(out.length - 1, at);
        out =
          out.slice(0, i) +
          String.fromCharCode(out.charCodeAt(i) ^ (1 << Math.floor(rng() * 7))) +
          out.slice(i + 1);
        break;
      }
      case 1:
        out = out.slice(0, at); // truncation
        break;
      case 2: {
        const depth = pick([10, 100, 1000, 20_000], rng);
        const open = rng() < 0.5 ? '[' : '{"a":';
        const close = open === '[' ? ']' : '}';
        out = `${out.slice(0, at)}${open.repeat(depth)}1${close.repeat(depth)}${out.slice(at)}`;
        break;
      }
      case 3:
        out = out.replace(/-?\d+(\.\d+)?/, pick(HUGE, rng)); // a number made huge or odd
        break;
      case 4:
        out = out.slice(0, at) + pick(UNICODE, rng) + out.slice(at);
        break;
      case 5: {
        // hex digit swap (ids, keys, signatures)
        const m = [...out.matchAll(/[0-9a-f]{64,128}/g)];
        if (m.length === 0) break;
        const hit = pick(m, rng);
        const i = (hit.index ?? 0) + Math.floor(rng() * hit[0].length);
        out = out.slice(0, i) + ((Number.parseInt(out[i]!, 16) + 1) % 16).toString(16) + out.slice(i + 1);
        break;
      }
      case 6:
        out = out.slice(0, at) + out.slice(Math.floor(rng() * out.length)); // splice self
        break;
      case 7:
        out = out.replace(
          pick(['"kind":', '"tags":', '"content":', '"created_at":', '"p"', '"expiration"'], rng),
          pick(['"x":', '"kind":[', '"tags":{', '"__proto__":', '"constructor":'], rng),
        );
        break;
      default:
        out =
          out.slice(0, at) + pick(['null', 'true', '""', '[]', '{}', ',', '"', '\\'], rng) + out.slice(at);
    }
  }
  return out;
}

function* mixed(
  count: number,
  rng: () => number,
  valid: string[],
  arbitrary: fc.Arbitrary<unknown>,
  asText: boolean,
) {
  const batch = 1000;
  for (let done = 0; done < count; ) {
    const n = Math.min(batch, count - done);
    const samples = fc.sample(arbitrary, { numRuns: Math.ceil(n / 3), seed: Math.floor(rng() * 2 ** 31) });
    for (let i = 0; i < n; i++) {
      const r = rng();
      let input: unknown;
      if (r < 0.6) input = mutate(pick(valid, rng), rng);
      else if (r < 0.65)
        input = pick(valid, rng); // the originals themselves must stay accepted
      else input = samples[i % samples.length];
      if (!asText && typeof input === 'string') {
        try {
          input = JSON.parse(input);
        } catch {
          // keep the string: verifyEnvelope accepts both
        }
      }
      yield input;
    }
    done += n;
  }
}

const deepValue = fc.integer({ min: 1, max: 50_000 }).map((depth) => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = depth % 2 ? [v] : { a: v };
  return v;
});

const deepText = fc
  .integer({ min: 1, max: 100_000 })
  .map((depth) =>
    depth % 2 ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
  );

// ---- targets ----------------------------------------------------------------------------------

function envelopeTarget(asText: boolean): Target {
  const originals = validEnvelopes();
  const originalIds = new Set(originals.map((e) => e.id));
  const valid = originals.map((e) => JSON.stringify(e));
  const kinds = Object.keys(PAYLOAD_SCHEMAS).map(Number) as PayloadKind[];
  const arbitrary = asText
    ? fc.oneof(fc.string({ unit: 'binary' }), fc.json(), deepText)
    : fc.oneof(
        fc.anything({ withBigInt: true, withNullPrototype: true, withMap: true, withSet: true }),
        fc.jsonValue(),
        deepValue,
      );
  return {
    name: asText ? 'envelope (text)' : 'envelope (parsed)',
    async run(input) {
      const result = await verifyEnvelope(input, { me: router, kinds, nowS: NOW_S });
      if (!result.ok) return { outcome: result.code };
      if (!testPubkeys.has(result.envelope.pubkey))
        return { outcome: 'accepted', forgery: 'signer is not a test key' };
      if (!originalIds.has(result.envelope.id))
        return { outcome: 'accepted', forgery: 'not an original signed id' };
      return { outcome: 'accepted' };
    },
    inputs: (count, rng) => mixed(count, rng, valid, arbitrary, asText),
  };
}

function nip98Target(): Target {
  const url = 'https://router.example/admin/apikeys';
  const body = '{"name":"ops"}';
  const allowed = new Set(testPubkeys);
  const headers = testKeys.map((k) => createNip98Header(url, 'POST', body, k, NOW_S));
  const events = headers.map((h) => Buffer.from(h.slice('Nostr '.length), 'base64').toString('utf8'));
  return {
    name: 'nip98 header',
    async run(input) {
      const header = typeof input === 'string' ? input : String(input);
      // A fresh store per input: replays are not what this target looks for.
      const result = await verifyNip98(header, {
        url,
        method: 'POST',
        body,
        replayStore: new MemoryReplayStore(),
        allowed,
        nowS: NOW_S,
      });
      if (!result.ok) return { outcome: result.code };
      if (!testPubkeys.has(result.pubkey))
        return { outcome: 'accepted', forgery: 'signer is not a test key' };
      return { outcome: 'accepted' };
    },
    *inputs(count, rng) {
      const arbitrary = fc.oneof(fc.string({ unit: 'binary' }), fc.json());
      for (const event of mixed(count, rng, events, arbitrary, true)) {
        const text = String(event);
        const r = rng();
        yield r < 0.8
          ? `Nostr ${Buffer.from(text, 'utf8').toString(rng() < 0.9 ? 'base64' : 'base64url')}`
          : r < 0.9
            ? text
            : `${pick(['nostr ', 'Nostr', 'Bearer ', 'Nostr  '], rng)}${Buffer.from(text).toString('base64')}`;
      }
    },
  };
}

/** Shape only: the schemas bound its length; the invoice itself is decoded later, not by them. */
const BOLT11_EXAMPLE = `lnbcrt10u1p${'q'.repeat(60)}`;

function schemaTarget(): Target {
  const schemas: [string, z.ZodType, unknown][] = [
    [
      'openai chat',
      openAiChatSchema,
      { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
    ],
    ['api key create', apiKeyCreateSchema, { name: 'ops', requests_per_min: 60 }],
    ['router tab topup', tabTopupSchema, { amount_msat: 1_000_000 }],
    ['router tab faucet', tabFaucetSchema, { bolt11: BOLT11_EXAMPLE }],
    ['router dashboard nodes query', dashboardNodesQuery, { limit: '50' }],
    ['router dashboard requests query', dashboardRequestsQuery, { limit: '100' }],
    ['fleet dashboard overview query', fleetOverviewQuery, { payments: '50' }],
    ['settlement topup', settlementTopupSchema, { payer: 'key-0001', amount_msat: 1_000_000 }],
    ['settlement faucet', settlementFaucetSchema, { bolt11: BOLT11_EXAMPLE }],
    ['settlement refund', settlementRefundSchema, { payer: 'key-0001', bolt11: BOLT11_EXAMPLE }],
    [
      'settlement account invoice',
      settlementAccountInvoiceSchema,
      { amount_msat: 1_000, description: 'deposit', expiry_s: 600 },
    ],
    [
      'settlement account payment',
      settlementAccountPaymentSchema,
      { bolt11: BOLT11_EXAMPLE, max_fee_msat: 0 },
    ],
    ['settlement account payment hash', settlementPaymentHashSchema, 'a'.repeat(64)],
    ['router dispute', clientDisputeSchema, { receipt: '{"content":"{}"}' }],
    ['settlement dispute', openDisputeSchema, { receipt: '{"content":"{}"}', payer: 'key-0001' }],
    [
      'payout destination',
      payoutDestinationSchema,
      { kind: 'lightning_address', address: 'node@example.com' },
    ],
    ...Object.entries(PAYLOAD_SCHEMAS).map(
      ([kind, schema]) => [`payload ${kind}`, schema as z.ZodType, {}] as [string, z.ZodType, unknown],
    ),
  ];
  const valid = schemas.map(([, , example]) => JSON.stringify(example));
  const arbitrary = fc.oneof(fc.jsonValue(), deepValue, fc.anything({ withBigInt: true }));
  let next = 0;
  return {
    name: 'route body schemas',
    run(input) {
      const [, schema] = schemas[next++ % schemas.length]!;
      const parsed = schema.safeParse(input);
      return { outcome: parsed.success ? 'accepted' : 'INVALID_REQUEST' };
    },
    inputs: (count, rng) => mixed(count, rng, valid, arbitrary, false),
  };
}

/**
 * The parsers of session 4: NIP-90 job tags (parseDvmJob) and L402 credentials (the header, then
 * the macaroon and preimage). A valid L402 token is one this target minted; any other accepted
 * token would be a forgery.
 */
function paymentParsersTarget(): Target {
  const rootKey = l402RootKey(generateSecretKey());
  const preimage = 'ab'.repeat(32);
  const paymentHash = sha256Hex(hexToBytes(preimage));
  const token = mintL402Macaroon({
    rootKey,
    paymentHash,
    tokenId: 'cd'.repeat(32),
    expiresAtS: NOW_S + 3600,
  });
  const valid = [
    JSON.stringify([
      ['i', 'hello', 'text'],
      ['param', 'model', 'm'],
      ['param', 'max_tokens', '8'],
      ['bid', '5000'],
    ]),
    JSON.stringify(`L402 ${token}:${preimage}`),
    JSON.stringify(`LSAT ${token}:${preimage}`),
  ];
  const arbitrary = fc.oneof(
    fc.array(fc.array(fc.string(), { maxLength: 5 }), { maxLength: 8 }),
    fc.string(),
    fc.jsonValue(),
  );
  const codeOf = (error: unknown) => (error instanceof FedAiError ? error.code : 'UNCAUGHT');
  return {
    name: 'payment and NIP-90 parsers',
    run(input) {
      if (Array.isArray(input)) {
        if (!input.every((t) => Array.isArray(t) && t.every((x) => typeof x === 'string')))
          return { outcome: 'BAD_PAYLOAD' };
        try {
          parseDvmJob(input as string[][], undefined, 64);
          return { outcome: 'accepted' };
        } catch (error) {
          if (!(error instanceof FedAiError)) throw error;
          return { outcome: codeOf(error) };
        }
      }
      if (typeof input !== 'string') return { outcome: 'BAD_SHAPE' };
      const credentials = parseL402Authorization(input);
      if (!credentials) return { outcome: 'UNAUTHORIZED' };
      try {
        const verified = verifyL402(rootKey, credentials, NOW_S);
        if (verified.paymentHash !== paymentHash)
          return { outcome: 'accepted', forgery: 'a token this target did not mint' };
        return { outcome: 'accepted' };
      } catch (error) {
        if (!(error instanceof FedAiError)) throw error;
        return { outcome: codeOf(error) };
      }
    },
    inputs: (count, rng) => mixed(count, rng, valid, arbitrary, false),
  };
}

export function protocolTargets(): Target[] {
  return [envelopeTarget(true), envelopeTarget(false), nip98Target(), schemaTarget(), paymentParsersTarget()];
}
