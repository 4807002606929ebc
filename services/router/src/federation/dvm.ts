// A thin NIP-90 bridge: text-generation jobs (kind 5050) from any Nostr client go through the same
// dispatch path as every other request. The router quotes the job's honest maximum cost, answers
// with feedback (kind 7000, `payment-required`, a BOLT11 invoice from its settlement service that
// tops up the client's own tab), waits for the payment, runs the job with the client's key as the
// payer, and publishes the result (kind 6050) with the node-signed metering attached. What the job
// did not use stays on the client's tab (its Nostr key can spend it on /infer or refund it).
// Encrypted requests (`encrypted` tag) are NIP-44 v2 to this router; the result is then encrypted too.
import {
  conversationKey,
  FedAiError,
  finalizeEvent,
  generationParamsSchema,
  nip44Decrypt,
  nip44Encrypt,
} from '@fed-ai/protocol';
import type { Event } from 'nostr-tools';
import type { ChatContext } from '../chat';
import { rankFor, runChat, settleAfterAnswer } from '../chat';
import { candidateMaxCostMsat } from '../dispatch';
import type { SettlementClient } from '../settlement-client';
import type { RelayBus } from './bus';

const DVM_KIND = { textRequest: 5050, textResult: 6050, feedback: 7000 } as const;

const MAX_JOB_BYTES = 64 * 1024;
const MAX_PENDING_JOBS = 1_000;
const INVOICE_WAIT_MS = 10 * 60_000;

interface DvmJob {
  messages: { role: 'user' | 'system'; content: string }[];
  model: string;
  max_tokens: number;
  temperature?: number | undefined;
  /** The most the client will pay (msat), if it said. */
  bidMsat?: number | undefined;
}

/** The job's inputs and params from its tags (clear or decrypted); throws INVALID_REQUEST. */
export function parseDvmJob(
  tags: readonly (readonly string[])[],
  defaultModel: string | undefined,
  defaultMaxTokens: number,
): DvmJob {
  const texts = tags.filter((t) => t[0] === 'i' && (t[2] ?? 'text') === 'text').map((t) => t[1] ?? '');
  if (texts.length === 0) throw new FedAiError('INVALID_REQUEST', 'a 5050 job needs an `i` tag of type text');
  const param = (name: string) => tags.find((t) => t[0] === 'param' && t[1] === name)?.[2];
  const model = param('model') ?? defaultModel;
  if (!model) throw new FedAiError('INVALID_REQUEST', 'name a model with ["param","model",…]');
  const maxTokens = Number(param('max_tokens') ?? defaultMaxTokens);
  const temperature = param('temperature') === undefined ? undefined : Number(param('temperature'));
  const bid = tags.find((t) => t[0] === 'bid')?.[1];
  const system = param('system');
  const parsed = generationParamsSchema.safeParse({
    model,
    messages: [
      ...(system ? [{ role: 'system', content: system }] : []),
      ...texts.map((content) => ({ role: 'user', content })),
    ],
    max_tokens: maxTokens,
    ...(temperature === undefined ? {} : { temperature }),
  });
  if (!parsed.success) throw new FedAiError('INVALID_REQUEST', 'the job params are out of range');
  const bidMsat = bid === undefined ? undefined : Number(bid);
  if (bidMsat !== undefined && !Number.isSafeInteger(bidMsat))
    throw new FedAiError('INVALID_REQUEST', 'bid must be an integer msat amount');
  return {
    messages: parsed.data.messages as DvmJob['messages'],
    model,
    max_tokens: parsed.data.max_tokens,
    temperature: parsed.data.temperature,
    bidMsat,
  };
}

export interface DvmOptions {
  bus: RelayBus;
  ctx: ChatContext;
  settlement: SettlementClient;
  secretKey: Uint8Array;
  pubkey: string;
  /** Per-pubkey rate budget for jobs. */
  admit: (pubkey: string) => boolean;
  defaultModel?: string | undefined;
  defaultMaxTokens: number;
  pollMs?: number;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

export function startDvm(o: DvmOptions): { close(): void } {
  const pending = new Set<string>();
  let closed = false;
  const sub = o.bus.subscribe(
    [{ kinds: [DVM_KIND.textRequest], since: Math.floor(Date.now() / 1000) - 5 }],
    (event) => {
      if (closed || pending.size >= MAX_PENDING_JOBS || pending.has(event.id)) return;
      if (JSON.stringify(event).length > MAX_JOB_BYTES) return;
      const to = event.tags.filter((t) => t[0] === 'p').map((t) => t[1]);
      if (to.length > 0 && !to.includes(o.pubkey)) return; // addressed to another provider
      if (!o.admit(event.pubkey)) return;
      pending.add(event.id);
      void serveJob(o, event, () => closed)
        .catch((error: unknown) => {
          const e = error instanceof FedAiError ? error : new FedAiError('INTERNAL');
          o.log.warn({ job: event.id, code: e.code }, 'NIP-90 job failed');
          return publishFeedback(o, event, 'error', `${e.code}: ${e.message}`);
        })
        .catch(() => {})
        .finally(() => pending.delete(event.id));
    },
  );
  return {
    close() {
      closed = true;
      sub.close();
    },
  };
}

async function serveJob(o: DvmOptions, request: Event, isClosed: () => boolean): Promise<void> {
  const encrypted = request.tags.some((t) => t[0] === 'encrypted');
  const key = encrypted ? conversationKey(o.secretKey, request.pubkey) : null;
  let tags: string[][] = request.tags;
  if (key) {
    try {
      tags = JSON.parse(nip44Decrypt(request.content, key)) as string[][];
    } catch {
      throw new FedAiError('BAD_PAYLOAD', 'encrypted params must be NIP-44 v2 to this router');
    }
    if (!Array.isArray(tags) || !tags.every((t) => Array.isArray(t) && t.every((x) => typeof x === 'string')))
      throw new FedAiError('BAD_PAYLOAD', 'encrypted params must be a JSON array of tags');
  }
  const job = parseDvmJob(tags, o.defaultModel, o.defaultMaxTokens);
  const params = {
    model: job.model,
    messages: job.messages,
    max_tokens: job.max_tokens,
    ...(job.temperature === undefined ? {} : { temperature: job.temperature }),
  };
  const ranked = rankFor(o.ctx, job.model, 0, job.max_tokens);
  // Whole sat, since some Lightning backends invoice only in sat.
  const quoteMsat =
    Math.ceil(Math.max(...ranked.map((c) => candidateMaxCostMsat(c, params)), 1) / 1000) * 1000;
  if (job.bidMsat !== undefined && job.bidMsat < quoteMsat)
    throw new FedAiError('PRICE_TOO_HIGH', `the job costs up to ${quoteMsat} msat, over the bid`);
  const payer = request.pubkey;
  const before = await o.settlement.tab(payer);
  const needMsat = Math.max(0, quoteMsat - before.balance_msat);
  if (needMsat > 0) {
    const invoice = await o.settlement.openTopup(payer, Math.ceil(needMsat / 1000) * 1000);
    await publishFeedback(o, request, 'payment-required', 'pay the invoice to run the job', [
      ['amount', String(Math.ceil(needMsat / 1000) * 1000), invoice.bolt11],
    ]);
    const deadline = Date.now() + INVOICE_WAIT_MS;
    for (;;) {
      if (isClosed() || Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
      const tab = await o.settlement.tab(payer).catch(() => null);
      if (tab && tab.balance_msat >= quoteMsat) break;
    }
  }
  await publishFeedback(o, request, 'processing', 'paid; generating');
  const outcome = await runChat(o.ctx, {
    correlationId: `dvm-${request.id.slice(0, 16)}`,
    payer,
    params,
    signal: AbortSignal.timeout(10 * 60_000),
  });
  const content = key ? nip44Encrypt(outcome.text || ' ', key) : outcome.text;
  const result = finalizeEvent(
    {
      kind: DVM_KIND.textResult,
      created_at: Math.floor(Date.now() / 1000),
      content,
      tags: [
        ['request', JSON.stringify(request)],
        ['e', request.id],
        ['p', request.pubkey],
        ['amount', String(outcome.costMsat)],
        ['fedai-metering', JSON.stringify(outcome.metering)],
        ...(outcome.offload ? [['fedai-peer-receipt', JSON.stringify(outcome.offload.result)]] : []),
        ...(key ? [['encrypted']] : []),
      ],
    },
    o.secretKey,
  );
  await o.bus.publish(result);
  settleAfterAnswer(outcome, o.log);
  o.log.info({ job: request.id, cost_msat: outcome.costMsat }, 'NIP-90 job answered');
}

async function publishFeedback(
  o: DvmOptions,
  request: Event,
  status: 'payment-required' | 'processing' | 'error',
  info: string,
  extra: string[][] = [],
): Promise<void> {
  const event = finalizeEvent(
    {
      kind: DVM_KIND.feedback,
      created_at: Math.floor(Date.now() / 1000),
      content: '',
      tags: [['status', status, info.slice(0, 200)], ...extra, ['e', request.id], ['p', request.pubkey]],
    },
    o.secretKey,
  );
  await o.bus.publish(event);
}
