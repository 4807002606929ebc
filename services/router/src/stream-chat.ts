// One streaming path for every surface: runs the chat, opens the SSE response at the first token,
// writes with backpressure, and settles. The OpenAI-compatible and native routes differ only in
// their wire encoder (what each event looks like).
import { toFedAiError, writeSseData } from '@fed-ai/kit';
import type { FedAiError } from '@fed-ai/protocol';
import type { FastifyReply } from 'fastify';
import { type ChatContext, type ChatOutcome, type ChatRequest, runChat, settleAfterAnswer } from './chat';

/** How one surface spells its events: each returns the `data:` payloads (or raw frames) to send. */
interface StreamWire {
  /** Sent once, right after the headers (e.g. OpenAI's role chunk). */
  head(): string[];
  delta(text: string): string;
  /** The end of a successful answer; raw frames (comments, [DONE]) go in `trailer`. */
  done(outcome: ChatOutcome): { data: string[]; trailer?: string };
  /** A failure after the stream started. */
  error(e: FedAiError): { data: string[]; trailer?: string };
}

export interface StreamChatOptions {
  request: Omit<ChatRequest, 'onDelta'>;
  reply: FastifyReply;
  wire: StreamWire;
  log: { warn: (o: object, m: string) => void };
  /** Called once the client has its answer (or left), before the capture: frees limits. */
  onAnswered?: (outcome: ChatOutcome | null) => void;
}

/**
 * Streams one chat. Throws only before the first byte went out (the route answers with its own
 * error shape); after that, failures end the stream with the wire's error event.
 */
export async function streamChat(ctx: ChatContext, options: StreamChatOptions): Promise<void> {
  const { reply, wire } = options;
  let started = false;
  const start = async () => {
    if (started) return;
    started = true;
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // No `connection` header, so Node sends the keep-alive timeout hint (see the node's SSE_HEADERS).
      'x-request-id': options.request.correlationId,
    });
    for (const data of wire.head()) await writeSseData(reply.raw, data);
  };
  let outcome: ChatOutcome;
  try {
    outcome = await runChat(ctx, {
      ...options.request,
      onDelta: async (text) => {
        await start();
        await writeSseData(reply.raw, wire.delta(text));
      },
    });
  } catch (error) {
    options.onAnswered?.(null);
    if (!started) throw error;
    const end = wire.error(toFedAiError(error));
    for (const data of end.data) await writeSseData(reply.raw, data);
    if (!reply.raw.writableEnded) reply.raw.end(end.trailer ?? '');
    return;
  }
  if (!options.request.signal.aborted) {
    // Write failures (the client left at the last moment) do not undo the node's signed work.
    await start();
    const end = wire.done(outcome);
    for (const data of end.data) await writeSseData(reply.raw, data);
    if (!reply.raw.writableEnded) reply.raw.end(end.trailer ?? '');
  }
  // Answered, or the client left and the node signed what it generated up to the cancel: paid.
  options.onAnswered?.(outcome);
  settleAfterAnswer(outcome, options.log);
}
