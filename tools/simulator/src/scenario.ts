// Scenario files: zod-validated JSON (unknown fields refused, so a typo is an error, not a default).
// A refusal is a SimError whose code says what kind of mistake it is and whose detail names the
// field: SCENARIO_INVALID "nodes[0].price.outputMsatPer1k: ...".
import { z } from 'zod';
import { SimError } from './errors';

const msat = z.number().int().nonnegative().max(1_000_000_000);
const probability = z.number().min(0).max(1);
const positive = z.number().positive();
const lognormalSpec = z.strictObject({ median: positive, sigma: z.number().min(0).max(3).default(0) });
const tokensSpec = z.strictObject({
  median: z.number().int().positive().max(1_000_000),
  sigma: z.number().min(0).max(3).default(0),
  max: z.number().int().positive().max(1_000_000).optional(),
});

const pricingSchema = z.discriminatedUnion('strategy', [
  z.strictObject({ strategy: z.literal('fixed') }),
  z.strictObject({
    strategy: z.literal('undercut'),
    intervalS: positive.max(86_400),
    /** Below this utilisation (0..1) the node cuts its price by stepBps; above highUtilisation it raises it. */
    targetUtilisation: probability,
    highUtilisation: probability.default(1),
    stepBps: z.number().int().min(1).max(5_000),
    floorInputMsatPer1k: msat,
    floorOutputMsatPer1k: msat,
  }),
]);

const nodeGroupSchema = z.strictObject({
  group: z.string().min(1).max(64),
  count: z.number().int().min(1).max(100_000),
  model: z.string().min(1).max(128),
  /** Spread the group over `spreadOver` models named `<model>-<k>` (node i serves k = i mod n). */
  spreadOver: z.number().int().min(1).max(10_000).optional(),
  contextWindow: z.number().int().positive().max(10_000_000).default(8192),
  maxOutputTokens: z.number().int().positive().max(1_000_000).default(1024),
  price: z.strictObject({ inputMsatPer1k: msat, outputMsatPer1k: msat }),
  /** Each node's price is the group's plus a deterministic spread of up to this many bps. */
  priceSpreadBps: z.number().int().min(0).max(10_000).default(0),
  ttftMs: lognormalSpec,
  rttMs: z.number().min(0).max(10_000).default(20),
  tokensPerS: lognormalSpec,
  capacity: z.strictObject({
    maxConcurrency: z.number().int().min(1).max(10_000),
    queueMax: z.number().int().min(0).max(100_000).default(0),
    queueTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  }),
  failure: z
    .strictObject({
      /** Chance that one generation fails. */
      perRequest: probability.default(0),
      /** Of those failures, the share that happens after the first token (no failover possible). */
      midStreamShare: probability.default(0),
      /** Mean crashes per hour of uptime (0: never); a crash fails everything running on the node. */
      crashesPerHour: z.number().min(0).max(3_600).default(0),
      downtimeS: lognormalSpec.default({ median: 60, sigma: 0 }),
    })
    .default({ perRequest: 0, midStreamShare: 0, crashesPerHour: 0, downtimeS: { median: 60, sigma: 0 } }),
  pricing: pricingSchema.default({ strategy: 'fixed' }),
  probation: z.boolean().default(false),
  /**
   * Federation only: the router that owns this group (index, taken modulo the router count, so a
   * variant with fewer routers still places it), or `spread` (node i belongs to router i mod n).
   */
  home: z.union([z.number().int().min(0).max(999), z.literal('spread')]).optional(),
});

const clientSchema = z.strictObject({
  name: z.string().min(1).max(64),
  /** Relative weight of this population in the arrivals. */
  share: positive,
  model: z.string().min(1).max(128),
  spreadOver: z.number().int().min(1).max(10_000).optional(),
  promptTokens: tokensSpec,
  outputTokens: tokensSpec,
  maxTokens: z.number().int().positive().max(1_000_000),
  maxPrice: z.strictObject({ inputMsatPer1k: msat.optional(), outputMsatPer1k: msat.optional() }).optional(),
  sort: z.enum(['price', 'latency', 'throughput', 'balanced']).optional(),
  retries: z
    .strictObject({ max: z.number().int().min(0).max(5), backoffMs: z.number().min(0).max(600_000) })
    .default({ max: 0, backoffMs: 1000 }),
  /** Payers (tabs) of this population; each starts with balanceMsat (absent: unlimited). */
  payers: z.number().int().min(1).max(1_000_000).default(100),
  balanceMsat: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  /** Pay-after only: the chance a payer walks away from a finished answer without paying. */
  defaultRate: probability.default(0),
});

const routersSchema = z.strictObject({
  count: z.number().int().min(1).max(1_000).default(1),
  maxAttempts: z.number().int().min(1).max(10).default(3),
  firstTokenTimeoutMs: z.number().int().min(1).max(3_600_000).default(60_000),
  totalTimeoutMs: z.number().int().min(1).max(3_600_000).default(600_000),
  heartbeatTtlMs: z.number().int().min(1).max(3_600_000).default(30_000),
  feeBps: z.number().int().min(0).max(10_000).default(500),
});

const federationSchema = z.strictObject({
  /** How long an auction waits for bids (AUCTION_WINDOW_MS; it closes early once every peer bid). */
  auctionWindowMs: z.number().int().min(1).max(60_000).default(400),
  /** RFB to bid round trip per peer (relay hops both ways), virtual ms. */
  rfbRttMs: lognormalSpec.default({ median: 120, sigma: 0.4 }),
  /** Origin to peer round trip of one offload attempt (HTTP there, the result back), virtual ms. */
  offloadRttMs: lognormalSpec.default({ median: 60, sigma: 0.3 }),
  /** Bids taken per auction (the real inbox's MAX_BIDS is 64). */
  maxBids: z.number().int().min(1).max(64).default(64),
  /** Settlement's OFFLOAD_FEE_BPS: the origin's fee on the peer's cost. */
  offloadFeeBps: z.number().int().min(0).max(10_000).default(500),
  /** Template overhead a bid's cost bound may include (checkBid's maxOverheadTokens). */
  maxOverheadTokens: z.number().int().min(0).max(1_000_000).default(65_536),
  /** Who a router asks: every other router, or the next `count` routers in ring order. */
  peers: z
    .union([z.literal('all'), z.strictObject({ count: z.number().int().min(1).max(999) })])
    .default('all'),
  /** Routers that bid dishonestly (checkBid must refuse them): a cost bound above the honest one, or an endpoint they never announced. */
  misbidders: z
    .array(
      z.strictObject({
        router: z.number().int().min(0).max(999),
        kind: z.enum(['inflateBound', 'foreignEndpoint']),
      }),
    )
    .max(64)
    .default([]),
});

const eventSchema = z.strictObject({
  atS: z.number().min(0),
  kind: z.enum(['crash', 'recover']),
  group: z.string().min(1).max(64),
  share: probability.default(1),
});

const variantSchema = z.strictObject({
  name: z.string().min(1).max(64),
  payment: z.enum(['before', 'after']).optional(),
  routers: z.number().int().min(1).max(1_000).optional(),
  heartbeatIntervalMs: z.number().int().min(100).max(600_000).optional(),
});

const scenarioSchema = z.strictObject({
  name: z.string().min(1).max(64),
  description: z.string().max(2_000).default(''),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(1),
  durationS: positive.max(7 * 86_400),
  /** Width of the time buckets of the charts (default: duration / 60). */
  bucketS: positive.optional(),
  payment: z.enum(['before', 'after']).default('before'),
  /**
   * 1: every reservation is candidateMaxCostMsat itself. n > 1: the prompt bound is memoised per
   * prompt and every n-th call is checked against candidateMaxCostMsat (for very large runs).
   */
  reservationCheckEvery: z.number().int().min(1).max(1_000_000).default(1),
  heartbeatIntervalMs: z.number().int().min(100).max(600_000).default(5_000),
  routers: routersSchema.default({
    count: 1,
    maxAttempts: 3,
    firstTokenTimeoutMs: 60_000,
    totalTimeoutMs: 600_000,
    heartbeatTtlMs: 30_000,
    feeBps: 500,
  }),
  nodes: z.array(nodeGroupSchema).min(1).max(64),
  clients: z.array(clientSchema).min(1).max(64),
  arrivals: z.strictObject({
    ratePerS: positive.max(1_000_000),
    bursts: z
      .array(z.strictObject({ atS: z.number().min(0), durationS: positive, multiplier: positive.max(1_000) }))
      .max(64)
      .default([]),
  }),
  events: z.array(eventSchema).max(256).default([]),
  /** Routers each own their node groups (`home`) and auction to peers what they cannot serve. */
  federation: federationSchema.optional(),
  variants: z.array(variantSchema).max(8).default([]),
});

export type Scenario = z.infer<typeof scenarioSchema>;
export type NodeGroup = Scenario['nodes'][number];
export type ClientSpec = Scenario['clients'][number];
export type PricingSpec = NodeGroup['pricing'];
export type VariantSpec = Scenario['variants'][number];
export type FederationSpec = NonNullable<Scenario['federation']>;

/** Hard bounds on a run: nodes in total and expected requests (rate x duration x burst factor). */
const SCENARIO_LIMITS = { maxNodes: 100_000, maxExpectedRequests: 50_000_000 } as const;

/** Parses scenario text; throws a SimError naming the first problem. */
export function parseScenario(text: string): Scenario {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new SimError('SCENARIO_NOT_JSON', (error as Error).message);
  }
  const parsed = scenarioSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new SimError('SCENARIO_INVALID', `${pathOf(issue.path)}: ${issue.message}`);
  }
  checkReferences(parsed.data);
  return parsed.data;
}

function pathOf(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i > 0 ? '.' : ''}${String(p)}`)).join('');
}

/** Model ids a node group or client population covers. */
export function modelsOf(spec: { model: string; spreadOver?: number | undefined }): string[] {
  if (spec.spreadOver === undefined) return [spec.model];
  return Array.from({ length: spec.spreadOver }, (_, k) => `${spec.model}-${k}`);
}

function checkReferences(s: Scenario): void {
  const groups = new Set<string>();
  const served = new Set<string>();
  let nodes = 0;
  for (const [i, g] of s.nodes.entries()) {
    if (groups.has(g.group))
      throw new SimError('SCENARIO_INVALID', `nodes[${i}].group: duplicate "${g.group}"`);
    groups.add(g.group);
    for (const m of modelsOf(g)) served.add(m);
    nodes += g.count;
  }
  for (const [i, c] of s.clients.entries())
    for (const m of modelsOf(c))
      if (!served.has(m))
        throw new SimError('SCENARIO_UNKNOWN_MODEL', `clients[${i}].model: no node group serves "${m}"`);
  for (const [i, e] of s.events.entries())
    if (!groups.has(e.group))
      throw new SimError('SCENARIO_UNKNOWN_GROUP', `events[${i}].group: no node group "${e.group}"`);
  checkFederation(s);
  if (nodes > SCENARIO_LIMITS.maxNodes)
    throw new SimError('SCENARIO_TOO_LARGE', `${nodes} nodes (at most ${SCENARIO_LIMITS.maxNodes})`);
  const burstFactor = Math.max(1, ...s.arrivals.bursts.map((b) => b.multiplier));
  const expected = s.arrivals.ratePerS * s.durationS * burstFactor;
  if (expected > SCENARIO_LIMITS.maxExpectedRequests)
    throw new SimError(
      'SCENARIO_TOO_LARGE',
      `about ${Math.round(expected)} requests (at most ${SCENARIO_LIMITS.maxExpectedRequests})`,
    );
}

/** Federation needs 2+ routers and pay-before (a peer is paid from a prepaid tab before it works). */
function checkFederation(s: Scenario): void {
  const homed = s.nodes.findIndex((g) => g.home !== undefined);
  if (!s.federation) {
    if (homed >= 0)
      throw new SimError('SCENARIO_INVALID', `nodes[${homed}].home: only with a federation section`);
    return;
  }
  const counts = [s.routers.count, ...s.variants.map((v) => v.routers ?? s.routers.count)];
  if (counts.some((n) => n < 2))
    throw new SimError('SCENARIO_INVALID', 'federation: needs at least 2 routers in every variant');
  if (s.payment === 'after' || s.variants.some((v) => v.payment === 'after'))
    throw new SimError('SCENARIO_INVALID', 'federation: only with payment "before"');
}

/** The scenario a variant describes: the base with the variant's overrides. */
export function applyVariant(s: Scenario, v: VariantSpec | undefined): Scenario {
  if (!v) return s;
  return {
    ...s,
    payment: v.payment ?? s.payment,
    heartbeatIntervalMs: v.heartbeatIntervalMs ?? s.heartbeatIntervalMs,
    routers: { ...s.routers, count: v.routers ?? s.routers.count },
  };
}
