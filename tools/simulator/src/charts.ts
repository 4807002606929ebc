// The report's charts, one SVG file each per variant.
import type { FederationReport, VariantReport } from './report';
import { barChart, lineChart } from './svg';

export function chartsOf(r: VariantReport): Record<string, string> {
  const t = r.timeline;
  const groupIndex = new Map<string, number>();
  for (const g of r.groups) groupIndex.set(g.group, groupIndex.size);
  const charts: Record<string, string> = {};
  charts.utilisation =
    r.nodes.length === r.groups.reduce((s, g) => s + g.nodes, 0) && r.nodes.length <= 60
      ? barChart({
          title: 'Utilisation per node (busy slots / capacity)',
          xLabel: 'node (colour: group)',
          yLabel: 'utilisation',
          labels: r.nodes.map((n) => n.id),
          values: r.nodes.map((n) => n.utilisation),
          colours: r.nodes.map((n) => groupIndex.get(n.group) ?? 0),
        })
      : lineChart({
          title: `Utilisation per node, highest first (${r.groups.reduce((s, g) => s + g.nodes, 0)} nodes)`,
          xLabel: 'share of nodes',
          yLabel: 'utilisation',
          series: [{ name: 'utilisation', points: r.utilisationCurve.map((u, i, a) => [i / a.length, u]) }],
        });
  charts.earnings = lineChart({
    title: `Node earnings: Lorenz curve (Gini ${r.earnings.gini.toFixed(3)})`,
    xLabel: 'share of nodes (poorest first)',
    yLabel: 'share of earnings',
    series: [
      { name: 'earnings', points: r.earnings.lorenz.map((p) => [p.x, p.y]) },
      {
        name: 'equality',
        points: [
          [0, 0],
          [1, 1],
        ],
        dashed: true,
      },
    ],
  });
  charts.price = lineChart({
    title: 'Output price over time (msat per 1k tokens)',
    xLabel: 'simulated time (s)',
    yLabel: 'msat / 1k output tokens',
    series: [
      { name: 'listed p10', points: t.map((p) => [p.tS, p.listedOutputMsatPer1k.p10]), dashed: true },
      { name: 'listed p50', points: t.map((p) => [p.tS, p.listedOutputMsatPer1k.p50]) },
      { name: 'listed p90', points: t.map((p) => [p.tS, p.listedOutputMsatPer1k.p90]), dashed: true },
      { name: 'paid p50', points: t.map((p) => [p.tS, p.paidOutputMsatPer1k.p50]) },
    ],
  });
  charts.latency = lineChart({
    title: 'Client latency over time (arrival to last token, incl. retries)',
    xLabel: 'simulated time (s)',
    yLabel: 'ms',
    series: [
      { name: 'p50', points: t.map((p) => [p.tS, p.latencyMs.p50]) },
      { name: 'p90', points: t.map((p) => [p.tS, p.latencyMs.p90]) },
      { name: 'p99', points: t.map((p) => [p.tS, p.latencyMs.p99]) },
    ],
  });
  const top = [...r.nodes].sort((a, b) => b.served - a.served || (a.id < b.id ? -1 : 1)).slice(0, 15);
  const rest = 1 - top.reduce((s, n) => s + n.trafficShare, 0);
  charts.traffic = barChart({
    title: 'Share of traffic by node (top 15, then the rest)',
    xLabel: 'node (colour: group)',
    yLabel: 'share of answered requests',
    labels: [...top.map((n) => `${n.id} @${n.outputMsatPer1k}`), 'others'],
    values: [...top.map((n) => n.trafficShare), Math.max(0, Math.round(rest * 1e5) / 1e5)],
    colours: [...top.map((n) => groupIndex.get(n.group) ?? 0), 7],
  });
  charts.failures = lineChart({
    title: 'Failed requests, failovers and client retries per interval',
    xLabel: 'simulated time (s)',
    yLabel: 'requests',
    series: [
      { name: 'failed', points: t.map((p) => [p.tS, p.failed]) },
      { name: 'failovers', points: t.map((p) => [p.tS, p.failovers]) },
      { name: 'client retries', points: t.map((p) => [p.tS, p.clientRetries]) },
    ],
  });
  let cumulative = 0;
  charts.fees = lineChart({
    title: 'Router fee income (cumulative, all routers)',
    xLabel: 'simulated time (s)',
    yLabel: 'msat',
    series: [
      {
        name: 'router fees',
        points: t.map((p) => {
          cumulative += p.routerFeeMsat;
          return [p.tS, cumulative];
        }),
      },
    ],
  });
  if (r.federation) charts.federation = federationChart(r.federation);
  return charts;
}

/** Offloads sent (out) and served for peers (in) per router. */
function federationChart(f: FederationReport): string {
  return barChart({
    title: `Offloads per router: out (sent to peers) and in (served for peers), fee ${f.offloadFeeBps} bps`,
    xLabel: 'router (colour: out / in)',
    yLabel: 'offloaded answers',
    labels: f.routers.flatMap((x) => [`r${x.index} out`, `r${x.index} in`]),
    values: f.routers.flatMap((x) => [x.servedByPeers, x.servedForPeers]),
    colours: f.routers.flatMap(() => [0, 1]),
  });
}
