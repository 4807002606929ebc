// Federation in a running router: the presence (announce + discover), the bidder and the offload
// route (serving peers), the auction and offload (using peers), prepaid tabs at peers, the NIP-90
// bridge, and `GET /v1/federation/peers`. Routes are registered before the server listens; the
// relay side starts once the router knows its own URL.
import type { JobHeartbeats } from '@fed-ai/kit';
import { SettlementAccountBackend } from '@fed-ai/lightning';
import { DEFAULT_PROMPT_OVERHEAD, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Dispatcher as UndiciDispatcher } from 'undici';
import type { ChatContext } from '../chat';
import type { RouterConfig } from '../config';
import { SettlementClient } from '../settlement-client';
import { registrySource } from './announce';
import { BidInbox } from './auction';
import { OpenBids, startBidder } from './bidder';
import { startDvm } from './dvm';
import { TokenBuckets } from './inbound';
import { type FederationPresence, startFederationPresence } from './index';
import { offloadChat, type PeerDirectory } from './offload-chat';
import { OFFLOAD_PATH, registerOffloadRoute } from './offload-route';
import { PeerTabs } from './peer-tabs';

/** Largest chat-template overhead a peer's bid bound may include (fixed + per-message, tokens). */
const MAX_OVERHEAD_TOKENS = 65_536;

export interface FederationDeps {
  config: RouterConfig;
  secretKey: Uint8Array;
  pubkey: string;
  ctx: ChatContext;
  replayStore: ReplayStore;
  agent: UndiciDispatcher;
  logger: Logger;
  /** Settlement's offload fee (from its /v1/info); 0 in free mode; null when unknown (no offload). */
  offloadFeeBps: number | null;
  /** Heartbeats of the federation loops (relay check, announcements, peer prune). */
  jobs?: JobHeartbeats;
}

export interface RunningFederation {
  start(routerUrl: string): void;
  presence(): FederationPresence | null;
  close(): Promise<void>;
}

export function setupFederation(app: FastifyInstance, deps: FederationDeps): RunningFederation | null {
  const { config } = deps;
  if (config.FEDERATION_RELAYS.length === 0) return null;
  let presence: FederationPresence | null = null;
  const closers: { close(): void }[] = [];
  const bids = new OpenBids();
  const buckets = new TokenBuckets(config.FEDERATION_INBOUND_BURST, config.FEDERATION_INBOUND_PER_S, 10_000);
  const mayPeer = (pubkey: string) => presence?.policy.mayPeer(pubkey) ?? false;
  const admit = (pubkey: string) => mayPeer(pubkey) && buckets.take(pubkey, Date.now());

  if (config.FEDERATION_ACCEPT_OFFLOAD)
    registerOffloadRoute(app, {
      ctx: deps.ctx,
      secretKey: deps.secretKey,
      pubkey: deps.pubkey,
      replayStore: deps.replayStore,
      bids,
      mayPeer,
    });
  app.get('/v1/federation/peers', async () => ({
    pubkey: deps.pubkey,
    relays: presence?.relays.connected() ?? [],
    peers: presence?.peers.snapshot(Date.now()) ?? [],
  }));

  return {
    presence: () => presence,
    start(routerUrl: string) {
      const publicUrl = (config.ROUTER_PUBLIC_URL ?? routerUrl).replace(/\/+$/, '');
      presence = startFederationPresence({
        relays: config.FEDERATION_RELAYS,
        secretKey: deps.secretKey,
        publicUrl,
        name: config.ROUTER_NAME,
        source: registrySource(deps.ctx.registry, {
          acceptingOffload: () => config.FEDERATION_ACCEPT_OFFLOAD,
        }),
        policy: {
          mode: config.FEDERATION_PEER_MODE,
          allowlist: config.FEDERATION_ALLOWLIST,
          mute: config.FEDERATION_MUTE,
          operator: config.FEDERATION_FOLLOWS_OF,
        },
        logger: deps.logger,
        refreshS: config.ANNOUNCE_REFRESH_S,
        ...(deps.jobs ? { jobs: deps.jobs } : {}),
      });
      const bus = presence.relays;
      if (config.FEDERATION_ACCEPT_OFFLOAD)
        closers.push(
          startBidder({
            bus,
            secretKey: deps.secretKey,
            pubkey: deps.pubkey,
            registry: deps.ctx.registry,
            offloadEndpoint: `${publicUrl}${OFFLOAD_PATH}`,
            admit,
            replayStore: deps.replayStore,
            bids,
            log: deps.logger,
          }),
        );
      const paid = deps.ctx.payments.mode === 'settlement' && config.SETTLEMENT_URL;
      const feeBps = deps.offloadFeeBps;
      if (config.FEDERATION_OFFLOAD && paid && feeBps !== null) {
        const inbox = new BidInbox(bus, deps.pubkey);
        closers.push(inbox);
        const tabs = new PeerTabs({
          secretKey: deps.secretKey,
          wallet: new SettlementAccountBackend({ url: config.SETTLEMENT_URL!, secretKey: deps.secretKey }),
          topupMsat: config.PEER_TOPUP_MSAT,
          maxTabMsat: config.PEER_MAX_TAB_MSAT,
          maxFeeMsat: config.PEER_TOPUP_MAX_FEE_MSAT,
          creditWaitMs: config.PEER_CREDIT_WAIT_MS,
          agent: deps.agent,
        });
        const directory = peerDirectory(presence);
        deps.ctx.offload = (req, localError) =>
          offloadChat(
            {
              bus,
              inbox,
              secretKey: deps.secretKey,
              pubkey: deps.pubkey,
              replayStore: deps.replayStore,
              peers: directory,
              tabs,
              payments: deps.ctx.payments,
              offloadFeeBps: feeBps,
              auctionWindowMs: config.AUCTION_WINDOW_MS,
              maxAttempts: config.MAX_ATTEMPTS,
              timeouts: { firstTokenMs: config.FIRST_TOKEN_TIMEOUT_MS, totalMs: config.TOTAL_TIMEOUT_MS },
              maxOverheadTokens: Math.max(MAX_OVERHEAD_TOKENS, DEFAULT_PROMPT_OVERHEAD.fixed_tokens),
              agent: deps.agent,
              log: deps.logger,
            },
            req,
            localError,
          );
      }
      if (paid)
        closers.push(
          startDvm({
            bus,
            ctx: deps.ctx,
            settlement: new SettlementClient(config.SETTLEMENT_URL!.replace(/\/+$/, ''), deps.secretKey),
            secretKey: deps.secretKey,
            pubkey: deps.pubkey,
            admit: (pubkey) => buckets.take(`dvm:${pubkey}`, Date.now()),
            defaultMaxTokens: config.DEFAULT_MAX_TOKENS,
            log: deps.logger,
          }),
        );
    },
    async close() {
      for (const c of closers) c.close();
      await presence?.close();
    },
  };
}

/** The auction's view of the peer table. */
function peerDirectory(presence: FederationPresence): PeerDirectory {
  const urlOf = (pubkey: string) => presence.peers.routerUrl(pubkey, Date.now());
  return {
    mayPeer: (p) => presence.policy.mayPeer(p),
    routerUrl: urlOf,
    offloadEndpoint: (p) => {
      const url = urlOf(p);
      return url === undefined ? undefined : `${url.replace(/\/+$/, '')}${OFFLOAD_PATH}`;
    },
    record: (p) => presence.peers.peerRecord(p),
    expectedBidders: (model) =>
      presence.peers.peersFor(model, Date.now()).filter((p) => p.status?.accepting_offload !== false).length,
    recordOutcome: (p, outcome) => presence.peers.recordOutcome(p, outcome),
  };
}
