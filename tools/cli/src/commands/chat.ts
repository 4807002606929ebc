import { dim, fail, printJson } from '../output';
import type { RouterFlags } from './client';
import { onlyModel } from './info';
import { clientFor, failSdk } from './sdk-call';

export interface ChatFlags extends RouterFlags {
  maxTokens: string;
  sort?: 'price' | 'latency' | 'throughput';
  temperature?: string;
  json?: boolean;
  system?: string;
}

export async function chat(prompt: string, flags: ChatFlags): Promise<void> {
  const maxTokens = Number(flags.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    fail('BAD_OPTION', '--max-tokens must be a positive integer');
  const temperature = flags.temperature === undefined ? undefined : Number(flags.temperature);
  if (temperature !== undefined && !(temperature >= 0 && temperature <= 2))
    fail('BAD_OPTION', '--temperature must be a number from 0 to 2');
  const { client, routerUrl, model: chosen } = clientFor(flags);
  // No model named: ask the router (an unreachable router is said as such, exit 3).
  const model = chosen ?? (await onlyModel(routerUrl));
  const messages = [
    ...(flags.system ? [{ role: 'system' as const, content: flags.system }] : []),
    { role: 'user' as const, content: prompt },
  ];
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  try {
    for await (const event of client.chatStream({
      model,
      messages,
      maxTokens,
      signal: abort.signal,
      ...(temperature !== undefined ? { temperature } : {}),
      ...(flags.sort ? { provider: { sort: flags.sort } } : {}),
    })) {
      if (event.type === 'delta' && !flags.json) process.stdout.write(event.text);
      if (event.type === 'done') {
        const r = event.result;
        if (flags.json)
          printJson({
            text: r.text,
            usage: r.usage,
            cost_msat: r.costMsat,
            node: r.node,
            receipt: r.receipt,
          });
        else
          process.stdout.write(
            `\n${dim(`[${r.usage.prompt_tokens}+${r.usage.completion_tokens} tokens, ${r.costMsat} msat, node ${r.node.slice(0, 12)}…]`)}\n`,
          );
      }
    }
  } catch (error) {
    await client.close();
    failSdk(error, routerUrl);
  }
  await client.close();
}
