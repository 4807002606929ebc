// The NIP-47 wallet service on Nostr relays: publishes the info event (13194), takes requests
// (23194) addressed to the fleet's service key, answers (23195) and notifies (23197; 23196 for
// NIP-04 clients). Every request is size-bounded, signature-checked on a fresh parse, refused when
// stale, ignored when its NIP-40 `expiration` has passed, deduplicated by event id in the database
// (a re-delivered or replayed event runs at most once, across restarts and replicas: the stored
// answer is sent again), tied to a known unrevoked connection, and rate-limited per connection.
//
// One service key serves every connection (NIP-47 says a key SHOULD be unique per connection; the
// client key is what identifies the connection here, and revoking it cuts that client off).
//
// Tracing (docs/observability.md): a request event MAY carry a `["traceparent", "<W3C value>"]` tag;
// the fleet's span for the request (and its calls to settlement) then continues that trace. The tag
// is optional, outside NIP-47, ignored by other wallet services and by this one when tracing is off.
import { annotateSpan, inSpan, relaySocketClass } from '@fed-ai/kit';
import { finalizeEvent, verifyNostrEvent } from '@fed-ai/protocol';
import * as nip04 from 'nostr-tools/nip04';
import * as nip44 from 'nostr-tools/nip44';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';
import type { Event } from 'nostr-tools/pure';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Fleet } from '../fleet';
import type { Payments } from '../payments';
import { METHODS } from '../policy';
import { NOTIFICATION_TYPES, NwcError, type NwcErrorCode, runMethod } from './methods';
import {
  type InvoiceRowForNwc,
  incomingTransaction,
  outgoingTransaction,
  type PaymentRowForNwc,
} from './transactions';

const NWC_KIND = {
  info: 13194,
  request: 23194,
  response: 23195,
  notification: 23197,
  notificationNip04: 23196,
} as const;

const MAX_EVENT_BYTES = 64 * 1024;
// Frames carry one event (content at most MAX_EVENT_BYTES) and its envelope.
useWebSocketImplementation(relaySocketClass(4 * MAX_EVENT_BYTES));
const MAX_CLOCK_SKEW_S = 600;
const MAX_RATE_ENTRIES = 10_000;
/** NIP-44 conversation keys kept (an ECDH each, ~1.5 ms in JS here; two per request otherwise). */
const MAX_CONVERSATION_KEYS = 4096;
const INFO_REPUBLISH_MS = 5 * 60_000;
const RELAY_CHECK_MS = 2_000;
/** How often a request taken but never answered is run (the first time included). */
const MAX_ATTEMPTS = 3;

export interface NwcServiceOptions {
  fleet: Fleet;
  payments: Payments;
  relays: string[];
  secretKey: Uint8Array;
  pubkey: string;
  allowNip04: boolean;
  requestsPerMinute: number;
  network: string;
  logger: Logger;
}

const requestSchema = z.object({ method: z.string().max(64), params: z.unknown().optional() });

type Encryption = 'nip44_v2' | 'nip04';

export class NwcService {
  // Reconnects (and resubscribes) after a relay restart; pings find dead connections.
  private readonly pool = new SimplePool({ enableReconnect: true, enablePing: true });
  private infoTimer: NodeJS.Timeout | null = null;
  private closer: { close(): void } | null = null;
  private readonly rate = new Map<string, { windowStartS: number; count: number }>();
  private readonly pending = new Set<Promise<void>>();
  /** By client pubkey; the oldest derived is dropped first. */
  private readonly conversationKeys = new Map<string, Uint8Array>();

  constructor(private readonly o: NwcServiceOptions) {}

  async start(): Promise<void> {
    // A relay that is down at start must not stop the service. The info event (replaceable) is
    // published again when a relay comes back (a restarted relay may have lost its store, and
    // clients read it before every first request) and every few minutes anyway.
    const publish = () =>
      this.publishInfo().catch(() =>
        this.o.logger.warn({ relays: this.o.relays.length }, 'nwc info event not published yet'),
      );
    await publish();
    let connected = this.connectedRelays();
    let sinceInfoMs = 0;
    this.infoTimer = setInterval(() => {
      const now = this.connectedRelays();
      sinceInfoMs += RELAY_CHECK_MS;
      const cameBack = [...now].some((url) => !connected.has(url));
      connected = now;
      if (cameBack || sinceInfoMs >= INFO_REPUBLISH_MS) {
        sinceInfoMs = 0;
        void publish();
      }
    }, RELAY_CHECK_MS);
    this.infoTimer.unref();
    this.closer = this.pool.subscribe(
      this.o.relays,
      { kinds: [NWC_KIND.request], '#p': [this.o.pubkey], since: this.o.fleet.nowS() - 60 },
      {
        onevent: (event) => {
          const task = this.handle(event)
            .catch((error: unknown) =>
              this.o.logger.error({ err: error, event_id: event.id }, 'nwc request failed'),
            )
            .finally(() => this.pending.delete(task));
          this.pending.add(task);
        },
      },
    );
  }

  async close(): Promise<void> {
    if (this.infoTimer) clearInterval(this.infoTimer);
    this.closer?.close();
    await Promise.allSettled([...this.pending]);
    this.pool.destroy();
  }

  private connectedRelays(): Set<string> {
    return new Set([...this.pool.listConnectionStatus()].filter(([, up]) => up).map(([url]) => url));
  }

  private async publishInfo(): Promise<void> {
    const event = finalizeEvent(
      {
        kind: NWC_KIND.info,
        created_at: this.o.fleet.nowS(),
        content: [...METHODS, 'notifications'].join(' '),
        tags: [
          ['encryption', this.o.allowNip04 ? 'nip44_v2 nip04' : 'nip44_v2'],
          ['notifications', NOTIFICATION_TYPES.join(' ')],
        ],
      },
      this.o.secretKey,
    );
    await Promise.any(this.pool.publish(this.o.relays, event));
  }

  /** One request event: checks in order, cheapest first; the dedupe row is written after the signature. */
  async handle(raw: Event): Promise<void> {
    const text = JSON.stringify(raw);
    if (text.length > MAX_EVENT_BYTES) return;
    // A fresh copy: what is checked below is what is stored and answered.
    const event = JSON.parse(text) as Event;
    if (event.kind !== NWC_KIND.request) return;
    if (!event.tags.some((t) => t[0] === 'p' && t[1] === this.o.pubkey)) return;
    const nowS = this.o.fleet.nowS();
    if (Math.abs(event.created_at - nowS) > MAX_CLOCK_SKEW_S) return;
    const expiration = Number(event.tags.find((t) => t[0] === 'expiration')?.[1]);
    if (Number.isFinite(expiration) && expiration <= nowS) return; // NIP-47: an expired request is ignored
    if (!verifyNostrEvent(event)) return;
    return inSpan('nwc request', { traceparent: traceparentOf(event), kind: 'server' }, async () => {
      const first = await this.o.fleet.db.query(
        'INSERT INTO wf_nwc_requests (event_id, client_pubkey, received_at_s, event) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING event_id',
        [event.id, event.pubkey, nowS, text],
      );
      if (first.rows.length === 0) return this.resendStored(event);
      return this.run(event, false);
    });
  }

  /**
   * Runs again the requests a process took but never answered (it crashed), once its claim is
   * older than `staleAfterS`: the claim is renewed atomically (one replica takes each), at most
   * MAX_ATTEMPTS times. Safe because a payment is idempotent by its payment hash: a re-run of a
   * payment that already started answers with that payment's outcome, never pays twice.
   */
  async recoverRequests(staleAfterS: number, limit = 20): Promise<number> {
    const nowS = this.o.fleet.nowS();
    const claimed = await this.o.fleet.db.query<{ event: string }>(
      `UPDATE wf_nwc_requests SET received_at_s = $1, attempts = attempts + 1
       WHERE event_id IN (SELECT event_id FROM wf_nwc_requests WHERE response IS NULL AND event IS NOT NULL
         AND received_at_s <= $2 AND attempts < $3 ORDER BY received_at_s LIMIT $4 FOR UPDATE SKIP LOCKED)
       RETURNING event`,
      [nowS, nowS - staleAfterS, MAX_ATTEMPTS, Math.min(Math.max(limit, 1), 100)],
    );
    for (const row of claimed.rows) {
      const event = JSON.parse(row.event) as Event;
      const expiration = Number(event.tags.find((t) => t[0] === 'expiration')?.[1]);
      if (Number.isFinite(expiration) && expiration <= nowS) continue; // expired meanwhile: ignored
      await inSpan('nwc request recovered', { traceparent: traceparentOf(event), kind: 'server' }, () =>
        this.run(event, true),
      );
    }
    return claimed.rows.length;
  }

  /** The request after its dedupe row is written: encryption, connection, rate, method. */
  private async run(event: Event, rerun: boolean): Promise<void> {
    const nowS = this.o.fleet.nowS();
    const encryption = encryptionOf(event);
    if (encryption === null || (encryption === 'nip04' && !this.o.allowNip04)) {
      // Answered in the scheme the client asked for, so it can read why.
      return this.respond(event, encryption === 'nip04' ? 'nip04' : 'nip44_v2', 'unknown', {
        code: 'UNSUPPORTED_ENCRYPTION',
        message: `encryption ${encryption ?? 'unknown'} is not supported; use nip44_v2`,
      });
    }
    const wallet = await this.o.fleet.walletForClient(event.pubkey);
    let method = 'unknown';
    let body: { method: string; params?: unknown };
    try {
      body = requestSchema.parse(JSON.parse(this.decrypt(encryption, event.pubkey, event.content)));
      method = body.method;
      // Only a known method name goes on the span (the client chooses this string).
      annotateSpan({ 'nwc.method': (METHODS as readonly string[]).includes(method) ? method : 'other' });
    } catch {
      return this.respond(event, encryption, method, {
        code: 'OTHER',
        message: 'the content does not decrypt to a NIP-47 request',
      });
    }
    if (!wallet)
      return this.respond(event, encryption, method, {
        code: 'UNAUTHORIZED',
        message: 'no wallet is connected to this key (unknown, revoked or expired)',
      });
    if (!this.admit(event.pubkey, nowS))
      return this.respond(event, encryption, method, {
        code: 'RATE_LIMITED',
        message: `at most ${this.o.requestsPerMinute} requests per minute`,
      });
    try {
      const result = await runMethod(
        {
          fleet: this.o.fleet,
          payments: this.o.payments,
          wallet,
          clientPubkey: event.pubkey,
          servicePubkey: this.o.pubkey,
          network: this.o.network,
          rerun,
          onPaid: (walletId, hash) => void this.notifyPayment(walletId, hash, 'payment_sent'),
        },
        method,
        body.params,
      );
      return this.respond(event, encryption, method, null, result);
    } catch (error) {
      if (error instanceof NwcError)
        return this.respond(event, encryption, method, { code: error.code, message: error.message });
      this.o.logger.error({ err: error, method }, 'nwc method failed');
      return this.respond(event, encryption, method, { code: 'INTERNAL', message: 'internal error' });
    }
  }

  /** A bounded fixed-minute counter per client key (per replica). */
  private admit(client: string, nowS: number): boolean {
    let entry = this.rate.get(client);
    if (!entry || nowS - entry.windowStartS >= 60) {
      if (!entry && this.rate.size >= MAX_RATE_ENTRIES) this.rate.clear();
      entry = { windowStartS: nowS, count: 0 };
      this.rate.set(client, entry);
    }
    entry.count += 1;
    return entry.count <= this.o.requestsPerMinute;
  }

  private decrypt(encryption: Encryption, peer: string, content: string): string {
    if (content.length > MAX_EVENT_BYTES) throw new Error('content too large');
    if (encryption === 'nip04') return nip04.decrypt(this.o.secretKey, peer, content);
    return nip44.v2.decrypt(content, this.conversationKey(peer));
  }

  private encrypt(encryption: Encryption, peer: string, text: string): string {
    if (encryption === 'nip04') return nip04.encrypt(this.o.secretKey, peer, text);
    return nip44.v2.encrypt(text, this.conversationKey(peer));
  }

  private conversationKey(peer: string): Uint8Array {
    let key = this.conversationKeys.get(peer);
    if (!key) {
      key = nip44.v2.utils.getConversationKey(this.o.secretKey, peer);
      if (this.conversationKeys.size >= MAX_CONVERSATION_KEYS)
        this.conversationKeys.delete(this.conversationKeys.keys().next().value as string);
      this.conversationKeys.set(peer, key);
    }
    return key;
  }

  private async respond(
    request: Event,
    encryption: Encryption,
    method: string,
    error: { code: NwcErrorCode; message: string } | null,
    result: unknown = null,
  ): Promise<void> {
    const content = JSON.stringify({ result_type: method, error, result: error ? null : result });
    const response = finalizeEvent(
      {
        kind: NWC_KIND.response,
        created_at: this.o.fleet.nowS(),
        tags: [
          ['p', request.pubkey],
          ['e', request.id],
          ['encryption', encryption],
        ],
        content: this.encrypt(encryption, request.pubkey, content),
      },
      this.o.secretKey,
    );
    await this.o.fleet.db.query('UPDATE wf_nwc_requests SET method = $2, response = $3 WHERE event_id = $1', [
      request.id,
      method.slice(0, 64),
      JSON.stringify(response),
    ]);
    await Promise.any(this.pool.publish(this.o.relays, response)).catch(() => {
      this.o.logger.warn({ event_id: request.id }, 'nwc response not published');
    });
  }

  /** A duplicate of an event already handled: send the stored answer again, run nothing. */
  private async resendStored(event: Event): Promise<void> {
    const rows = await this.o.fleet.db.query<{ response: string | null }>(
      'SELECT response FROM wf_nwc_requests WHERE event_id = $1',
      [event.id],
    );
    const stored = rows.rows[0]?.response;
    if (stored)
      await Promise.any(this.pool.publish(this.o.relays, JSON.parse(stored) as Event)).catch(() => {});
  }

  /** Tells every live connection of a wallet about a payment (NIP-44 23197; NIP-04 23196 too if on). */
  async notifyPayment(
    walletId: string,
    paymentHash: string,
    type: (typeof NOTIFICATION_TYPES)[number],
  ): Promise<void> {
    const db = this.o.fleet.db;
    const nowS = this.o.fleet.nowS();
    const tx =
      type === 'payment_received'
        ? (
            await db.query<InvoiceRowForNwc>('SELECT * FROM wf_invoices WHERE payment_hash = $1', [
              paymentHash,
            ])
          ).rows.map((r) => incomingTransaction(r, nowS))[0]
        : (
            await db.query<PaymentRowForNwc>('SELECT * FROM wf_payments WHERE payment_hash = $1', [
              paymentHash,
            ])
          ).rows.map(outgoingTransaction)[0];
    if (!tx) return;
    const clients = await db.query<{ client_pubkey: string }>(
      `SELECT client_pubkey FROM wf_connections WHERE wallet_id = $1 AND revoked_at_s IS NULL
       AND (expires_at_s IS NULL OR expires_at_s > $2) LIMIT 32`,
      [walletId, nowS],
    );
    const content = JSON.stringify({ notification_type: type, notification: tx });
    for (const { client_pubkey } of clients.rows) {
      const schemes: [Encryption, number][] = [['nip44_v2', NWC_KIND.notification]];
      if (this.o.allowNip04) schemes.push(['nip04', NWC_KIND.notificationNip04]);
      for (const [encryption, kind] of schemes) {
        const event = finalizeEvent(
          {
            kind,
            created_at: nowS,
            tags: [['p', client_pubkey]],
            content: this.encrypt(encryption, client_pubkey, content),
          },
          this.o.secretKey,
        );
        await Promise.any(this.pool.publish(this.o.relays, event)).catch(() => {});
      }
    }
  }
}

/** NIP-47: the `encryption` tag names the scheme; no tag means NIP-04 (the first version). */
function encryptionOf(event: Event): Encryption | null {
  const tag = event.tags.find((t) => t[0] === 'encryption')?.[1];
  if (tag === undefined) return 'nip04';
  if (tag === 'nip44_v2' || tag === 'nip04') return tag;
  return null;
}

/** The optional `traceparent` tag (W3C trace context; kit checks its format). */
function traceparentOf(event: Event): string | undefined {
  return event.tags.find((t) => t[0] === 'traceparent')?.[1];
}
