// Test double of a NIP-47 wallet service (tests only): it listens on a real relay for requests
// (kind 23194) to its key, answers `make_invoice` (kind 23195, NIP-44 v2) with an invoice the test
// mints, and publishes its info event (13194) as NIP-47 asks. A test makes it hostile by minting
// an invoice other than the one asked for (another amount, say).
import { randomBytes } from 'node:crypto';
import { relaySocketClass } from '@fed-ai/kit';
import { decodeInvoice } from '@fed-ai/lightning';
import { type Event, finalizeEvent, generateSecretKey, getPublicKey, nip44 } from 'nostr-tools';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';

useWebSocketImplementation(relaySocketClass(1024 * 1024));

export interface NwcWalletDouble {
  /** `nostr+walletconnect://…` for a client of this wallet (holds the client's secret). */
  uri: string;
  /** Amounts (msat) that make_invoice was asked for, in order. */
  asked: number[];
  close(): void;
}

export async function startNwcWalletDouble(options: {
  relayUrl: string;
  /** The BOLT11 to answer for a make_invoice of `amountMsat` with `expirySeconds`. */
  mint: (amountMsat: number, expirySeconds: number) => string;
}): Promise<NwcWalletDouble> {
  const walletKey = generateSecretKey();
  const wallet = getPublicKey(walletKey);
  const clientSecret = randomBytes(32);
  const pool = new SimplePool();
  const asked: number[] = [];
  const info = finalizeEvent(
    {
      kind: 13194,
      created_at: Math.floor(Date.now() / 1000),
      content: 'make_invoice',
      tags: [['encryption', 'nip44_v2']],
    },
    walletKey,
  );
  await Promise.any(pool.publish([options.relayUrl], info));

  const answer = async (request: Event) => {
    const key = nip44.getConversationKey(walletKey, request.pubkey);
    const body = JSON.parse(nip44.decrypt(request.content, key)) as {
      method: string;
      params: { amount: number; expiry?: number; description?: string };
    };
    if (body.method !== 'make_invoice') return;
    asked.push(body.params.amount);
    const bolt11 = options.mint(body.params.amount, body.params.expiry ?? 3600);
    const decoded = decodeInvoice(bolt11);
    const createdAt = Math.floor(Date.now() / 1000);
    const result = {
      type: 'incoming',
      state: 'pending',
      invoice: bolt11,
      description: body.params.description ?? '',
      amount: decoded.amountMsat,
      payment_hash: decoded.paymentHash,
      fees_paid: 0,
      created_at: createdAt,
      expires_at: createdAt + (body.params.expiry ?? 3600),
    };
    const response = finalizeEvent(
      {
        kind: 23195,
        created_at: createdAt,
        content: nip44.encrypt(JSON.stringify({ result_type: 'make_invoice', result }), key),
        tags: [
          ['p', request.pubkey],
          ['e', request.id],
          ['encryption', 'nip44_v2'],
        ],
      },
      walletKey,
    );
    await Promise.any(pool.publish([options.relayUrl], response));
  };
  const sub = pool.subscribe(
    [options.relayUrl],
    { kinds: [23194], '#p': [wallet] },
    {
      onevent: (event) => void answer(event).catch(() => {}),
    },
  );
  const relay = encodeURIComponent(options.relayUrl);
  return {
    uri: `nostr+walletconnect://${wallet}?relay=${relay}&secret=${clientSecret.toString('hex')}`,
    asked,
    close() {
      sub.close();
      pool.close([options.relayUrl]);
    },
  };
}
