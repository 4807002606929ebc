// The report as Markdown: a summary per variant, market shares per node group, money and
// invariants, and links to the charts. Deterministic like the JSON: the simulator's own speed (wall
// clock) goes to speed.json and the terminal, never into the report.
import type { FederationReport, VariantReport } from './report';
import type { Report } from './run';

const n = (v: number) => v.toLocaleString('en-US');
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

function summaryTable(variants: readonly VariantReport[]): string[] {
  const rows = [
    '| variant | payment | routers | requests | answered | failed | failovers | client retries | p50 / p99 latency ms | client paid msat | node earnings msat | router fees msat | unpaid work msat | Gini |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const v of variants)
    rows.push(
      `| ${v.variant} | ${v.payment} | ${v.routers} | ${n(v.totals.requests)} | ${n(v.totals.ok)} (${pct(v.totals.successRate)}) | ${n(v.totals.failed)} | ${n(v.totals.failovers)} | ${n(v.totals.clientRetries)} | ${v.latencyMs.p50} / ${v.latencyMs.p99} | ${n(v.money.clientPaidMsat)} | ${n(v.money.nodeEarnedMsat)} | ${n(v.money.routerFeeMsat)} | ${n(v.money.unpaidWorkMsat)} | ${v.earnings.gini.toFixed(3)} |`,
    );
  return rows;
}

function groupTable(v: VariantReport): string[] {
  const rows = [
    '| group | nodes | in / out msat per 1k (end) | traffic share | share per node | utilisation | failed | refused (429) | earnings per node msat | unpaid work msat |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const g of v.groups)
    rows.push(
      `| ${g.group} | ${n(g.nodes)} | ${g.inputMsatPer1k} / ${g.outputMsatPer1k} | ${pct(g.trafficShare)} | ${(g.trafficSharePerNode * 100).toFixed(3)}% | ${pct(g.utilisation)} | ${n(g.failed)} | ${n(g.refused)} | ${n(g.earningsPerNodeMsat)} | ${n(g.unpaidWorkMsat)} |`,
    );
  return rows;
}

function federationSection(f: FederationReport): string[] {
  const refused = Object.entries(f.bids.refused)
    .map(([code, count]) => `${code} ${n(count)}`)
    .join(', ');
  const rows = [
    '| router | nodes | requests | auctions | won | no bids | all refused | offloads out | offloads in | served by peers | served for peers | offload fee income msat | fees on peer work msat |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of f.routers)
    rows.push(
      `| ${r.index} | ${n(r.nodes)} | ${n(r.requests)} | ${n(r.auctions)} | ${n(r.won)} | ${n(r.noBids)} | ${n(r.allRefused)} | ${n(r.offloadsOut)} | ${n(r.offloadsIn)} | ${n(r.servedByPeers)} | ${n(r.servedForPeers)} | ${n(r.offloadFeeMsat)} | ${n(r.peerWorkFeeMsat)} |`,
    );
  return [
    `Federation (peers: ${f.peers}, window ${f.auctionWindowMs} ms, offload fee ${f.offloadFeeBps} bps): ${n(f.auctions)} auctions: won ${n(f.outcomes.won)}, no bids ${n(f.outcomes.noBids)}, all bids refused ${n(f.outcomes.allRefused)}; no peer announcing the model ${n(f.outcomes.noPeerAnnounces)}. Bids sent ${n(f.bids.sent)}, accepted ${n(f.bids.accepted)}, refused: ${refused || 'none'}, late ${n(f.bids.late)}; peers asked without an eligible node ${n(f.bids.peersWithoutTerms)}.`,
    '',
    `Offloads: ${n(f.offloadAttempts)} attempts, ${n(f.offloadsServed)} answered (${pct(f.offloadedShare)} of answers), ${n(f.peerFailures)} peer failures (${n(f.bidMismatches)} BID_MISMATCH). Offload fee income ${n(f.offloadFeeMsat)} msat. Auction p50/p90/p99 ${f.auctionMs.p50}/${f.auctionMs.p90}/${f.auctionMs.p99} ms; latency p50/p99 local ${f.latencyMs.local.p50}/${f.latencyMs.local.p99} ms, offloaded ${f.latencyMs.offloaded.p50}/${f.latencyMs.offloaded.p99} ms. Invariants: re-offloads ${f.invariants.reoffloads}, peer charges outside the bid ${f.invariants.offloadOverBid}.`,
    '',
    ...rows,
    '',
  ];
}

function variantSection(v: VariantReport, prefix: string): string[] {
  const inv = v.invariants;
  const outcomes = Object.entries(v.totals.outcomes)
    .map(([code, count]) => `${code} ${n(count)}`)
    .join(', ');
  const charts = ['utilisation', 'earnings', 'price', 'latency', 'traffic', 'failures', 'fees'];
  if (v.federation) charts.push('federation');
  const money = v.federation
    ? `Money: client paid ${n(v.money.clientPaidMsat)} = node earnings ${n(v.money.nodeEarnedMsat)} + router fees ${n(v.money.routerFeeMsat)} + offload fees ${n(v.federation.offloadFeeMsat)} msat`
    : `Money: client paid ${n(v.money.clientPaidMsat)} = node earnings ${n(v.money.nodeEarnedMsat)} + router fees ${n(v.money.routerFeeMsat)} msat`;
  return [
    `## Variant: ${v.variant}`,
    '',
    `Payment ${v.payment}, ${v.routers} router(s), heartbeat every ${v.heartbeatIntervalMs} ms, ${v.durationS} s simulated, ${n(v.events)} events.`,
    '',
    `Outcomes: ${outcomes}. Latency p50/p90/p99 ${v.latencyMs.p50}/${v.latencyMs.p90}/${v.latencyMs.p99} ms; time to first token p50/p99 ${v.ttftMs.p50}/${v.ttftMs.p99} ms; cost per answer p50/p99 ${v.costMsat.p50}/${v.costMsat.p99} msat.`,
    '',
    ...groupTable(v),
    '',
    `${money}: ${v.money.conserved ? 'conserved exactly' : 'NOT CONSERVED'}. Reserved ${n(v.money.reservedMsat)} msat, of which ${n(v.money.refundedMsat)} went back to the tabs. Unpaid node work ${n(v.money.unpaidWorkMsat)} msat (${n(v.money.unpaidAnswers)} answers never paid).`,
    '',
    `Invariants over ${n(inv.checkedRequests)} requests: over capacity ${inv.overCapacity}, over queue ${inv.overQueue}, filter violations ${inv.filterViolations}, split mismatches ${inv.splitMismatches}, charge over reservation ${inv.chargeOverReservation}, negative balances ${inv.negativeBalances}, reservation math mismatches ${inv.reservationMismatches}, leaked leases/slots ${inv.leaks}, held after drain ${inv.heldAfterDrainMsat} msat, balance mismatches ${inv.balanceMismatches}.`,
    '',
    ...(v.federation ? federationSection(v.federation) : []),
    ...charts.map((c) => `![${c}](${prefix}${c}.svg)`),
    '',
  ];
}

export function renderMarkdown(report: Report): string {
  return [
    `# Simulation: ${report.scenario}`,
    '',
    report.description,
    '',
    `Seed ${report.seed}. Same seed, same report (JSON, Markdown and charts byte for byte).`,
    '',
    ...summaryTable(report.variants),
    '',
    ...report.variants.flatMap((v) => variantSection(v, `${v.variant}-`)),
  ].join('\n');
}
