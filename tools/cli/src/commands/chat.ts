import { FedAiSdkError } from '@fed-ai/sdk';
import { dim, EXIT, fail, printJson } from '../output';
import { clientFor, type RouterFlags } from './client';

export interface ChatFlags extends RouterFlags {
  maxTokens: string;
  sort?: 'price' | 'latency' | 'throughput';
  temperature?: string;
  json?: boolean;
  system?: string;
}

export async function chat(prompt: string, flags: ChatFlags): Promise<void> {
  const { client, model } = clientFor(flags);
  if (!model) fail('no model: pass --model', EXIT.usage);
  const maxTokens = Number(flags.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    fail('--max-tokens must be a positive integer', EXIT.usage);
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
      ...(flags.temperature !== undefined ? { temperature: Number(flags.temperature) } : {}),
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
    const e = FedAiSdkError.from(error);
    fail(
      `${e.code}: ${e.message}${e.hint ? ` (${e.hint})` : ''}`,
      e.code === 'NETWORK' ? EXIT.unreachable : EXIT.failure,
    );
  } finally {
    await client.close();
  }
}
