// Prepaid tabs at peer routers. This router pays a peer for offloaded work from a tab it holds
// there (as a Nostr-key payer, NIP-98), and funds that tab only by paying the peer's own BOLT11
// top-up invoice from this router's account at its settlement service (`/v1/account/*`): money
// crosses between two settlement services only as a paid Lightning invoice with a preimage.
// Exposure to any one peer is capped (`maxTabMsat`); one top-up per peer runs at a time.
import { type DecodedInvoice, decodeInvoice, type LightningBackend } from '@fed-ai/lightning';
import { createNip98Header, FedAiError } from '@fed-ai/protocol';
import { request, type Dispatcher as UndiciDispatcher } from 'undici';
import { z } from 'zod';

const tabSchema = z.object({
  balance_msat: z.number().int().nonnegative(),
  reserved_msat: z.number().int().nonnegative(),
});
const topupSchema = z.object({
  bolt11: z.string().min(10).max(4096),
  payment_hash: z.string().regex(/^[0-9a-f]{64}$/),
});

export interface PeerTabsOptions {
  secretKey: Uint8Array;
  /** This router's account at its own settlement service: pays the peers' invoices. */
  wallet: Pick<LightningBackend, 'payInvoice'>;
  /** Each top-up buys at least this much (whole sat, since invoices are in sat on some backends). */
  topupMsat: number;
  /** The most this router keeps at any one peer (available + reserved). */
  maxTabMsat: number;
  /** Most routing fee one top-up may cost. */
  maxFeeMsat: number;
  /** How long to wait for the peer to credit a paid top-up. */
  creditWaitMs: number;
  agent?: UndiciDispatcher | undefined;
  timeoutMs?: number;
}

export interface TabState {
  availableMsat: number;
  reservedMsat: number;
}

/** A cached view of our tab at a peer older than this is read again before it is relied on. */
const TAB_VIEW_MAX_AGE_MS = 60_000;
const MAX_VIEWS = 10_000;

export class PeerTabs {
  private readonly topups = new Map<string, Promise<void>>();
  /**
   * What we may still draw at each peer without asking: the last balance read, minus the full cost
   * bound of every job sent since (as if each cost its maximum). It only errs low, so a job is
   * never sent on credit the tab may not have; the peer's tab routes are rate-limited, and one read
   * per job would exhaust them.
   */
  private readonly views = new Map<string, { drawableMsat: number; readAtMs: number }>();

  constructor(private readonly o: PeerTabsOptions) {}

  /** Our tab at the peer (router base URL). */
  async balance(peerUrl: string): Promise<TabState> {
    const body = await this.call(peerUrl, 'GET', '/v1/tabs/me');
    const tab = tabSchema.safeParse(body);
    if (!tab.success) throw new FedAiError('PEER_FAILED', 'the peer gave an unreadable tab');
    return { availableMsat: tab.data.balance_msat, reservedMsat: tab.data.reserved_msat };
  }

  /**
   * Makes sure the tab at the peer covers `neededMsat` (the job's cost bound) and counts it as
   * drawn, topping the tab up when it does not. Throws PEER_FAILED when the peer cannot be funded
   * within the exposure cap.
   */
  async ensure(peer: string, peerUrl: string, neededMsat: number): Promise<void> {
    const view = this.views.get(peer);
    if (view && Date.now() - view.readAtMs < TAB_VIEW_MAX_AGE_MS && view.drawableMsat >= neededMsat) {
      view.drawableMsat -= neededMsat;
      return;
    }
    let tab = await this.balance(peerUrl);
    if (tab.availableMsat < neededMsat) {
      const running = this.topups.get(peer);
      if (running) await running.catch(() => {});
      else {
        const topup = this.topup(peerUrl, tab, neededMsat).finally(() => this.topups.delete(peer));
        this.topups.set(peer, topup);
        await topup;
      }
      tab = await this.balance(peerUrl);
      if (tab.availableMsat < neededMsat)
        throw new FedAiError('PEER_FAILED', 'the tab at the peer could not be funded in time');
    }
    if (!this.views.has(peer) && this.views.size >= MAX_VIEWS)
      this.views.delete(this.views.keys().next().value!);
    this.views.set(peer, { drawableMsat: tab.availableMsat - neededMsat, readAtMs: Date.now() });
  }

  /** After a refusal by the peer (e.g. its tab was lower than we thought): read it next time. */
  forget(peer: string): void {
    this.views.delete(peer);
  }

  private async topup(peerUrl: string, tab: TabState, neededMsat: number): Promise<void> {
    const shortMsat = neededMsat - tab.availableMsat;
    const amountMsat = Math.ceil(Math.max(shortMsat, this.o.topupMsat) / 1000) * 1000;
    if (tab.availableMsat + tab.reservedMsat + amountMsat > this.o.maxTabMsat)
      throw new FedAiError('PEER_FAILED', 'funding this peer would exceed the exposure cap');
    const body = await this.call(peerUrl, 'POST', '/v1/tabs/topup', { amount_msat: amountMsat });
    const invoice = topupSchema.safeParse(body);
    if (!invoice.success) throw new FedAiError('PEER_FAILED', 'the peer gave no top-up invoice');
    // Pay only what we asked for: a peer's invoice for more (or for nothing) is refused.
    let decoded: DecodedInvoice;
    try {
      decoded = decodeInvoice(invoice.data.bolt11);
    } catch {
      throw new FedAiError('PEER_FAILED', 'the peer top-up is not a BOLT11 invoice');
    }
    if (decoded.amountMsat !== amountMsat || decoded.paymentHash !== invoice.data.payment_hash)
      throw new FedAiError('PEER_FAILED', 'the peer top-up invoice is not for the amount asked');
    await this.o.wallet.payInvoice(invoice.data.bolt11, { maxFeeMsat: this.o.maxFeeMsat });
    const deadline = Date.now() + this.o.creditWaitMs;
    while (Date.now() < deadline) {
      const now = await this.balance(peerUrl);
      if (now.availableMsat >= tab.availableMsat + amountMsat - (now.reservedMsat - tab.reservedMsat)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async call(
    peerUrl: string,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<unknown> {
    const url = `${peerUrl.replace(/\/+$/, '')}${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(url, {
        method,
        headers: {
          authorization: createNip98Header(url, method, text, this.o.secretKey),
          ...(text ? { 'content-type': 'application/json' } : {}),
        },
        ...(text ? { body: text } : {}),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 5_000),
        ...(this.o.agent ? { dispatcher: this.o.agent } : {}),
      });
    } catch {
      throw new FedAiError('PEER_FAILED', 'the peer did not answer');
    }
    const answer: unknown = await response.body.json().catch(() => null);
    if (response.statusCode !== 200)
      throw new FedAiError('PEER_FAILED', `the peer answered ${response.statusCode}`);
    return answer;
  }
}
