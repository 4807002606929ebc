// Read-only views of a router: models, nodes, status, quote.
import { FedAiClient, FedAiSdkError } from '@fed-ai/sdk';
import { bold, EXIT, fail, printJson } from '../output';
import { getJson, type RouterFlags, routerTarget } from './client';

interface JsonFlag extends RouterFlags {
  json?: boolean;
}

export async function models(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = (await getJson(`${routerUrl}/v1/models`)) as { data?: Record<string, unknown>[] };
  if (flags.json) return printJson(body.data ?? []);
  const rows = body.data ?? [];
  if (rows.length === 0) process.stdout.write('no models on this router yet.\n');
  for (const m of rows) {
    const price = m.price as { input_msat_per_1k?: number; output_msat_per_1k?: number } | undefined;
    process.stdout.write(
      `${bold(String(m.id))}  context ${m.context_window ?? '?'}  nodes ${m.nodes ?? '?'}  ` +
        `price in/out ${price?.input_msat_per_1k ?? '?'}/${price?.output_msat_per_1k ?? '?'} msat per 1k tokens\n`,
    );
  }
}

export async function nodes(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = (await getJson(`${routerUrl}/nodes`)) as { nodes?: Record<string, unknown>[] };
  if (flags.json) return printJson(body.nodes ?? []);
  for (const n of body.nodes ?? []) process.stdout.write(`${JSON.stringify(n)}\n`);
}

export async function status(flags: JsonFlag): Promise<void> {
  const { routerUrl } = routerTarget(flags);
  const body = await getJson(`${routerUrl}/status`);
  printJson(body);
}

export async function quote(prompt: string, flags: JsonFlag & { maxTokens: string }): Promise<void> {
  const target = routerTarget(flags);
  if (!target.model) fail('no model: pass --model', EXIT.usage);
  const client = FedAiClient.withNewKey(target.routerUrl);
  try {
    const q = await client.quote({
      model: target.model,
      messages: [{ role: 'user', content: prompt }],
      maxTokens: Number(flags.maxTokens),
    });
    if (flags.json) return printJson(q);
    process.stdout.write(
      `${bold(q.model)}: at most ${q.max_cost_msat} msat for ${q.prompt_tokens} prompt + ${q.max_tokens} completion tokens ` +
        `(${q.candidates} eligible node(s); price ${q.price.input_msat_per_1k}/${q.price.output_msat_per_1k} msat per 1k)\n`,
    );
  } catch (error) {
    const e = FedAiSdkError.from(error);
    fail(`${e.code}: ${e.message}`, e.code === 'NETWORK' ? EXIT.unreachable : EXIT.failure);
  } finally {
    await client.close();
  }
}
