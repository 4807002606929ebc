// The pure core of `fedai chaos`: the seeded fault schedule, reading answers, reconciling the tab's
// charges with the answers received, the checks and the report. (No end-to-end test of the command:
// it starts a whole network; `pnpm fedai chaos --minutes 0.5` runs it.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  buildChaosReport,
  type ChaosInput,
  FAULT_KINDS,
  formatChaosReport,
  newChargeLog,
  observeCharges,
  type PlanOptions,
  parseAnswer,
  planFaults,
  reconcile,
} from '../src/commands/chaos-core';

const plan = (over: Partial<PlanOptions> = {}): PlanOptions => ({
  seed: 17,
  durationMs: 180_000,
  startMs: 10_000,
  endMarginMs: 20_000,
  minGapMs: 4_000,
  maxGapMs: 12_000,
  killTargets: ['router', 'settlement', 'node-1', 'node-2', 'wallet-fleet'],
  nodes: ['node-1', 'node-2'],
  slowSettlement: true,
  ...over,
});

test('the same seed gives the same schedule; another seed another one', () => {
  assert.deepEqual(planFaults(plan()), planFaults(plan()));
  assert.notDeepEqual(planFaults(plan()), planFaults(plan({ seed: 18 })));
});

test('property: faults stay in the window, spaced by the gap, with known kinds and targets', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.integer({ min: 0, max: 3_600_000 }),
      fc.boolean(),
      fc.boolean(),
      (seed, durationMs, slowSettlement, postgres) => {
        const options = plan({ seed, durationMs, slowSettlement, postgres });
        const faults = planFaults(options);
        for (const [i, f] of faults.entries()) {
          assert.ok(f.atMs >= options.startMs && f.atMs <= durationMs - options.endMarginMs);
          if (i > 0) {
            const gap = f.atMs - faults[i - 1]!.atMs;
            assert.ok(gap >= options.minGapMs && gap <= options.maxGapMs);
          }
          assert.ok(FAULT_KINDS.includes(f.kind));
          if (f.kind === 'kill-restart') assert.ok(options.killTargets.includes(f.target));
          if (f.kind === 'node-stall') assert.ok(options.nodes.includes(f.target));
          if (f.kind === 'postgres-restart') assert.ok(postgres && f.target === 'postgres');
          if (f.kind === 'slow-settlement') {
            assert.ok(slowSettlement);
            assert.ok((f.delayMs ?? 0) >= 200 && (f.delayMs ?? 0) <= 1500);
          }
          assert.ok(f.holdMs >= 500 && f.holdMs <= 8000);
        }
      },
    ),
  );
});

test('a long plan draws every kind and no kind without targets', () => {
  const kinds = new Set(planFaults(plan({ durationMs: 3_600_000, postgres: true })).map((f) => f.kind));
  assert.deepEqual([...kinds].sort(), [...FAULT_KINDS].sort());
  const pglite = planFaults(plan({ durationMs: 3_600_000 }));
  assert.ok(
    pglite.every((f) => f.kind !== 'postgres-restart'),
    'no PostgreSQL to restart',
  );
  // Turning PostgreSQL off leaves the schedules of existing seeds as they were.
  assert.deepEqual(planFaults(plan()), planFaults(plan({ postgres: false })));
  const without = planFaults(
    plan({ durationMs: 3_600_000, killTargets: [], nodes: [], slowSettlement: false }),
  );
  assert.ok(without.length > 0 && without.every((f) => f.kind === 'relay-restart'));
});

const receipt = { id: 'x', kind: 28120 };
const fedai = { request_id: 'r1', cost_msat: 1234, receipt };

test('parseAnswer reads a JSON answer and an SSE stream, and names what is wrong', () => {
  assert.deepEqual(parseAnswer(JSON.stringify({ choices: [], fedai })), {
    ok: true,
    requestId: 'r1',
    costMsat: 1234,
  });
  assert.deepEqual(parseAnswer(JSON.stringify({ choices: [] })), { ok: false, code: 'NO_RECEIPT' });
  assert.deepEqual(parseAnswer('{"choices":'), { ok: false, code: 'BAD_ANSWER' });
  const stream = [
    `data: ${JSON.stringify({ choices: [{ delta: { content: 'hi' } }] })}`,
    '',
    `data: ${JSON.stringify({ choices: [], fedai })}`,
    '',
    ': x-fedai-receipt abc',
    '',
    'data: [DONE]',
    '',
  ].join('\n');
  assert.deepEqual(parseAnswer(stream), { ok: true, requestId: 'r1', costMsat: 1234 });
  assert.deepEqual(parseAnswer(stream.replace('data: [DONE]', '')), {
    ok: false,
    code: 'STREAM_INCOMPLETE',
    requestId: 'r1',
  });
  const failed = `data: ${JSON.stringify({ error: { code: 'NODE_TIMEOUT', message: 'm' } })}\n\ndata: [DONE]\n\n`;
  assert.deepEqual(parseAnswer(failed), { ok: false, code: 'NODE_TIMEOUT' });
  assert.deepEqual(parseAnswer('data: [DONE]\n\n'), { ok: false, code: 'NO_RECEIPT' });
  assert.deepEqual(
    parseAnswer(JSON.stringify({ fedai: { ...fedai, cost_msat: 1.5 } })),
    { ok: false, code: 'NO_RECEIPT' },
    'a cost that is not integer msat is no receipt',
  );
});

test('observeCharges joins looks at the tab, counts duplicates and looks that may have missed rows', () => {
  const log = newChargeLog();
  observeCharges(log, [{ requestId: 'a', amountMsat: 1 }], 2);
  observeCharges(
    log,
    [
      { requestId: 'b', amountMsat: 2 },
      { requestId: 'a', amountMsat: 1 },
    ],
    2,
  );
  assert.equal(log.byRequest.size, 2);
  assert.equal(log.gaps, 0);
  observeCharges(
    log,
    [
      { requestId: 'c', amountMsat: 3 },
      { requestId: 'd', amountMsat: 4 },
    ],
    2,
  );
  assert.equal(log.gaps, 1, 'a full look of only new rows may have missed some');
  observeCharges(
    log,
    [
      { requestId: 'd', amountMsat: 4 },
      { requestId: 'd', amountMsat: 4 },
      { requestId: 'c', amountMsat: 9 },
    ],
    20,
  );
  assert.equal(log.duplicates, 2);
});

test('reconcile: charged without an answer, at another amount, not charged, and the sum', () => {
  const answers = new Map([
    ['a', 100],
    ['b', 200],
    ['c', 300],
  ]);
  const charges = newChargeLog();
  observeCharges(
    charges,
    [
      { requestId: 'a', amountMsat: 100 },
      { requestId: 'b', amountMsat: 250 },
      { requestId: 'z', amountMsat: 50 },
    ],
    20,
  );
  const r = reconcile({
    answers,
    charges,
    fundedMsat: 10_000,
    finalBalanceMsat: 9_600,
    finalReservedMsat: 0,
  });
  assert.equal(r.answers, 3);
  assert.equal(r.answeredMsat, 600);
  assert.equal(r.chargesSeen, 3);
  assert.equal(r.chargedWithoutAnswer, 1);
  assert.equal(r.chargedWrongAmount, 1);
  assert.equal(r.answersNotSeenCharged, 1);
  assert.equal(r.spentMsat, 400);
  assert.equal(r.unexplainedMsat, -200);
});

test('property: a tab charged exactly the received answers reconciles clean', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 })),
      fc.nat({ max: 10_000 }),
      (ids, salt) => {
        const answers = new Map(ids.map((id, i) => [id, (salt + i * 7) % 5000]));
        const charges = newChargeLog();
        const rows = [...answers].map(([requestId, amountMsat]) => ({ requestId, amountMsat }));
        for (let i = 0; i < rows.length; i += 5) observeCharges(charges, rows.slice(i, i + 5), 20);
        const spent = rows.reduce((s, r) => s + r.amountMsat, 0);
        const r = reconcile({
          answers,
          charges,
          fundedMsat: 50_000_000,
          finalBalanceMsat: 50_000_000 - spent,
          finalReservedMsat: 0,
        });
        assert.equal(r.chargedWithoutAnswer + r.chargedWrongAmount + r.answersNotSeenCharged, 0);
        assert.equal(r.unexplainedMsat, 0);
      },
    ),
  );
});

const input = (over: Partial<ChaosInput> = {}): ChaosInput => {
  const answers = new Map([['a', 100]]);
  const charges = newChargeLog();
  observeCharges(charges, [{ requestId: 'a', amountMsat: 100 }], 20);
  return {
    startedAt: '2026-12-03T00:00:00.000Z',
    minutes: 3,
    seed: 17,
    clients: 4,
    reservationTimeoutS: 60,
    database: 'pglite',
    model: 'demo',
    durationMs: 180_000,
    planned: 2,
    faults: [
      { atMs: 10_000, kind: 'kill-restart', target: 'router', holdMs: 600, startedMs: 10_001, tookMs: 3000 },
      { atMs: 20_000, kind: 'node-stall', target: 'node-1', holdMs: 2000, startedMs: 20_001, tookMs: 2000 },
    ],
    requests: { ok: 1, failed: 2, failuresByCode: { NODE_TIMEOUT: 2 } },
    reconciliation: reconcile({
      answers,
      charges,
      fundedMsat: 1000,
      finalBalanceMsat: 900,
      finalReservedMsat: 0,
    }),
    finalReservedMsat: 0,
    nodesServing: 2,
    nodes: 2,
    ledger: { ok: true, accounts: 5, transfers: 9, problems: [] },
    ...over,
  };
};

test('the report holds when every check holds, and each failed check fails it', () => {
  const good = buildChaosReport(input());
  assert.equal(good.checks.all, true);
  assert.deepEqual(good.faultsByKind, { 'kill-restart router': 1, 'node-stall': 1 });
  const md = formatChaosReport(good);
  assert.match(md, /\| all \| yes \|/);
  assert.match(md, /NODE_TIMEOUT 2/);
  const bad: [Partial<ChaosInput>, keyof typeof good.checks][] = [
    [{ ledger: { ok: false, error: 'HTTP 500' } }, 'ledgerBalanced'],
    [{ finalReservedMsat: 40 }, 'noLeakedReservation'],
    [{ nodesServing: 1 }, 'breakersClosed'],
    [
      {
        faults: [
          {
            atMs: 1,
            kind: 'relay-restart',
            target: 'relay',
            holdMs: 500,
            startedMs: 1,
            tookMs: 1,
            error: 'no',
          },
        ],
      },
      'everyFaultRecovered',
    ],
    [
      {
        reconciliation: {
          ...input().reconciliation,
          spentMsat: 150,
          unexplainedMsat: 50,
        },
      },
      'noChargeWithoutAnswer',
    ],
  ];
  for (const [over, check] of bad) {
    const report = buildChaosReport(input(over));
    assert.equal(report.checks[check], false, check);
    assert.equal(report.checks.all, false, check);
    assert.match(formatChaosReport(report), /\| all \| NO \|/);
  }
});
