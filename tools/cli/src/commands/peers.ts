// `fedai peers`: the peer routers this router discovered on its federation relays, with what they
// announce (models, prices, status), whether its policy lets them peer, their trust and the
// reputation it keeps (answered, failed, latency, disputes).
import { z } from 'zod';
import { dim, printJson } from '../output';
import { agoText, formatTable, groupDigits } from '../table';
import { callJson, type RouterFlags, routerTarget } from './client';

const msat = z.number().int().nonnegative();
const peersAnswer = z.looseObject({
  pubkey: z.string(),
  relays: z.array(z.string()),
  peers: z.array(
    z.looseObject({
      pubkey: z.string(),
      allowed: z.boolean(),
      trust: z.number(),
      capabilities: z.looseObject({ name: z.string(), url: z.string() }).optional(),
      prices: z.array(
        z.looseObject({
          model: z.string(),
          price: z.looseObject({ input_msat_per_1k: msat, output_msat_per_1k: msat }),
        }),
      ),
      status: z
        .looseObject({ nodes_online: z.number(), load: z.number(), accepting_offload: z.boolean() })
        .optional(),
      last_seen_ms: z.number(),
      reputation: z.looseObject({
        answered: z.number(),
        failed: z.number(),
        latencyEwmaMs: z.number().optional(),
        disputes: z.number(),
      }),
    }),
  ),
});

export async function peers(flags: RouterFlags & { json?: boolean }): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = await callJson(routerUrl, '/v1/federation/peers', peersAnswer);
  if (flags.json) return printJson(body);
  process.stdout.write(`${dim(`relays connected: ${body.relays.join(', ') || 'none'}`)}\n`);
  if (body.peers.length === 0) {
    process.stdout.write(`no peer routers discovered by ${routerUrl} yet.\n`);
    return;
  }
  process.stdout.write(
    formatTable(
      [
        { header: 'PEER' },
        { header: 'NAME' },
        { header: 'URL' },
        { header: 'PEER?' },
        { header: 'TRUST', align: 'right' },
        { header: 'LOAD', align: 'right' },
        { header: 'OK/FAIL', align: 'right' },
        { header: 'LATENCY', align: 'right' },
        { header: 'SEEN', align: 'right' },
        { header: 'MODELS (input/output msat per 1k tokens)' },
      ],
      body.peers.map((p) => [
        `${p.pubkey.slice(0, 12)}…`,
        p.capabilities?.name ?? '?',
        p.capabilities?.url ?? '?',
        p.allowed ? 'yes' : 'no',
        p.trust.toFixed(2),
        p.status ? `${Math.round(p.status.load * 100)}%` : '?',
        `${p.reputation.answered}/${p.reputation.failed}`,
        p.reputation.latencyEwmaMs === undefined ? '-' : `${Math.round(p.reputation.latencyEwmaMs)} ms`,
        agoText(Date.now() - p.last_seen_ms),
        p.prices
          .map(
            (s) =>
              `${s.model} ${groupDigits(s.price.input_msat_per_1k)}/${groupDigits(s.price.output_msat_per_1k)}`,
          )
          .join(', '),
      ]),
    ),
  );
}
