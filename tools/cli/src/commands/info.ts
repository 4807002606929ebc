// Read-only views of a router: models, nodes, status, quote. Tables for people; `--json` prints
// the router's answer exactly as it came (after checking its shape).
import { z } from 'zod';
import { bold, fail, printJson } from '../output';
import { agoText, formatTable, groupDigits, priceText } from '../table';
import { callJson, type RouterFlags, routerTarget } from './client';

interface JsonFlag extends RouterFlags {
  json?: boolean;
}

const msat = z.number().int().nonnegative();
const priceSchema = z.looseObject({ input_msat_per_1k: msat, output_msat_per_1k: msat });
const modelSchema = z.looseObject({
  id: z.string(),
  nodes: z.number().int().nonnegative(),
  context_window: z.number().int().positive(),
  price: priceSchema,
  demo: z.boolean().optional(),
});
const modelsAnswer = z.looseObject({ data: z.array(modelSchema) });
const nodesAnswer = z.looseObject({
  nodes: z.array(
    z.looseObject({
      id: z.string(),
      endpoint: z.string(),
      models: z.array(z.looseObject({ id: z.string(), price: priceSchema.optional() })),
      region: z.string().nullable().optional(),
      serving: z.boolean(),
      last_seen_ms_ago: z.number().nullable(),
      free_slots: z.number().nullable(),
      in_flight: z.number(),
      health: z.looseObject({ state: z.string() }),
      banned: z.boolean(),
    }),
  ),
});
const statusAnswer = z.looseObject({
  name: z.string(),
  pubkey: z.string(),
  nodes_registered: z.number().int(),
  nodes_serving: z.number().int(),
  models: z.array(modelSchema),
  payments: z.string(),
});

function modelTable(rows: z.infer<typeof modelSchema>[]): string {
  return formatTable(
    [
      { header: 'MODEL' },
      { header: 'NODES', align: 'right' },
      { header: 'CONTEXT', align: 'right' },
      { header: 'INPUT per 1k tokens', align: 'right' },
      { header: 'OUTPUT per 1k tokens', align: 'right' },
      { header: 'INPUT per 1M tokens', align: 'right' },
      { header: 'OUTPUT per 1M tokens', align: 'right' },
    ],
    rows.map((m) => {
      const input = priceText(m.price.input_msat_per_1k);
      const output = priceText(m.price.output_msat_per_1k);
      return [
        `${m.id}${m.demo ? ' (demo)' : ''}`,
        String(m.nodes),
        groupDigits(m.context_window),
        input.per1k,
        output.per1k,
        input.per1M,
        output.per1M,
      ];
    }),
  );
}

export async function models(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = await callJson(routerUrl, '/v1/models', modelsAnswer);
  if (flags.json) return printJson(body.data);
  if (body.data.length === 0) {
    process.stdout.write(`no models on the router at ${routerUrl} yet (nodes register within seconds).\n`);
    return;
  }
  process.stdout.write(modelTable(body.data));
  process.stdout.write('prices: the cheapest serving node; 1 sat = 1,000 msat\n');
}

export async function nodes(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = await callJson(routerUrl, '/nodes', nodesAnswer);
  if (flags.json) return printJson(body.nodes);
  if (body.nodes.length === 0) {
    process.stdout.write(`no nodes registered with the router at ${routerUrl}.\n`);
    return;
  }
  process.stdout.write(
    formatTable(
      [
        { header: 'NODE' },
        { header: 'ENDPOINT' },
        { header: 'STATE' },
        { header: 'HEALTH' },
        { header: 'IN FLIGHT', align: 'right' },
        { header: 'FREE', align: 'right' },
        { header: 'SEEN', align: 'right' },
        { header: 'MODELS (input/output msat per 1k tokens)' },
      ],
      body.nodes.map((n) => [
        `${n.id.slice(0, 12)}…`,
        n.endpoint,
        n.banned ? 'banned' : n.serving ? 'serving' : 'not serving',
        n.health.state,
        String(n.in_flight),
        n.free_slots === null ? '-' : String(n.free_slots),
        agoText(n.last_seen_ms_ago),
        n.models
          .map((m) =>
            m.price
              ? `${m.id} ${groupDigits(m.price.input_msat_per_1k)}/${groupDigits(m.price.output_msat_per_1k)}`
              : m.id,
          )
          .join(', '),
      ]),
    ),
  );
}

export async function status(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = await callJson(routerUrl, '/status', statusAnswer);
  if (flags.json) return printJson(body);
  const line = (k: string, v: string) => process.stdout.write(`${k.padEnd(9)} ${v}\n`);
  line('router', `${bold(body.name)} at ${routerUrl}`);
  line('pubkey', body.pubkey);
  line('nodes', `${body.nodes_serving} serving of ${body.nodes_registered} registered`);
  line('payments', body.payments);
  if (body.models.length === 0) line('models', 'none yet');
  else process.stdout.write(`\n${modelTable(body.models)}`);
}

export async function quote(prompt: string, flags: JsonFlag & { maxTokens: string }): Promise<void> {
  const target = routerTarget(flags);
  const model = target.model ?? (await onlyModel(target.routerUrl));
  const maxTokens = Number(flags.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    fail('BAD_OPTION', '--max-tokens must be a positive integer');
  const { FedAiClient } = await import('@fed-ai/sdk');
  const { failSdk } = await import('./sdk-call');
  const client = FedAiClient.withNewKey(target.routerUrl);
  try {
    const q = await client.quote({ model, messages: [{ role: 'user', content: prompt }], maxTokens });
    if (flags.json) return printJson(q);
    process.stdout.write(
      `${bold(q.model)}: at most ${groupDigits(q.max_cost_msat)} msat for ${q.prompt_tokens} prompt + ${q.max_tokens} completion tokens ` +
        `(${q.candidates} eligible node(s); price ${q.price.input_msat_per_1k}/${q.price.output_msat_per_1k} msat per 1k)\n`,
    );
  } catch (error) {
    failSdk(error, target.routerUrl);
  } finally {
    await client.close();
  }
}

/** The model to use when none is named: the router's only one (unreachable router: exit 3). */
export async function onlyModel(routerUrl: string): Promise<string> {
  const list = (await callJson(routerUrl, '/v1/models', modelsAnswer)).data;
  if (list.length === 1) return list[0]!.id;
  if (list.length === 0)
    fail('NO_MODEL', `the router at ${routerUrl} serves no model yet`, {
      fix: 'wait for nodes to register (pnpm fedai nodes), or start a network with: pnpm fedai up',
    });
  fail('NO_MODEL', `the router at ${routerUrl} serves ${list.length} models and none was chosen`, {
    fix: `pass --model, one of: ${list.map((m) => m.id).join(', ')}`,
  });
}
