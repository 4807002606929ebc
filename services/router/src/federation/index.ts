// A router's federation presence: announces this router on the federation relays and discovers
// peer routers there. Wires FederationRelays, the Announcer, the inbound gate, the peer policy,
// the peer table and Discovery; returns the peer table (for the auction and the peers route).
import type { JobHeartbeats } from '@fed-ai/kit';
import { publicKeyOf } from '@fed-ai/protocol';
import type { Logger } from 'pino';
import { Announcer, type AnnouncerOptions, type AnnounceSource } from './announce';
import { Discovery } from './discovery';
import { InboundGate, type InboundOptions } from './inbound';
import { PeerPolicy, type PeerPolicyOptions } from './peer-policy';
import { PeerTable, type PeerTableOptions } from './peers';
import { FederationRelays, type FederationRelaysOptions } from './relays';

export interface FederationPresenceOptions {
  relays: readonly string[];
  secretKey: Uint8Array;
  /** Defaults to the key of `secretKey`. */
  pubkey?: string;
  publicUrl: string;
  name: string;
  about?: string;
  region?: string;
  features?: AnnouncerOptions['features'];
  source: AnnounceSource;
  /** Peer policy; `self` is always this router's key. */
  policy?: Omit<PeerPolicyOptions, 'self'>;
  logger: Logger;
  /** Announcements are republished this often (and expire after `expiryFactor` x this). */
  refreshS?: number;
  expiryFactor?: number;
  changeCheckMs?: number;
  inbound?: InboundOptions;
  peers?: Omit<PeerTableOptions, 'policy'>;
  relayOptions?: Omit<FederationRelaysOptions, 'urls' | 'logger' | 'jobs'>;
  /** How often expired peers are pruned (default 30 s). */
  pruneIntervalMs?: number;
  /** Heartbeats of the presence's loops (relay check, announcements, peer prune). */
  jobs?: JobHeartbeats;
}

export interface FederationPresence {
  pubkey: string;
  peers: PeerTable;
  policy: PeerPolicy;
  relays: FederationRelays;
  announcer: Announcer;
  discovery: Discovery;
  close(): Promise<void>;
}

export function startFederationPresence(options: FederationPresenceOptions): FederationPresence {
  const pubkey = options.pubkey ?? publicKeyOf(options.secretKey);
  if (pubkey !== publicKeyOf(options.secretKey)) throw new Error('pubkey does not match secretKey');
  const logger = options.logger;
  const jobs = options.jobs;
  const relays = new FederationRelays({ urls: options.relays, logger, ...options.relayOptions, jobs });
  const policy = new PeerPolicy({ ...options.policy, self: pubkey });
  const peers = new PeerTable({ policy, ...options.peers });
  const refreshS = options.refreshS;
  // The gate must accept stored announcements as old as ours may be before they expire (peers
  // with a longer refresh are covered up to an hour).
  const maxAgeS = Math.max(3600, (refreshS ?? 300) * (options.expiryFactor ?? 3));
  const gate = new InboundGate({ maxAgeS, ...options.inbound });
  const discovery = new Discovery({
    relays,
    gate,
    policy,
    peers,
    self: pubkey,
    logger,
    pruneIntervalMs: options.pruneIntervalMs,
    jobs,
  });
  const announcer = new Announcer(relays, options.source, {
    secretKey: options.secretKey,
    name: options.name,
    publicUrl: options.publicUrl,
    about: options.about,
    region: options.region,
    features: options.features,
    refreshS,
    expiryFactor: options.expiryFactor,
    changeCheckMs: options.changeCheckMs,
    logger,
    jobs,
  });
  discovery.start();
  announcer.start();
  return {
    pubkey,
    peers,
    policy,
    relays,
    announcer,
    discovery,
    async close() {
      announcer.close();
      discovery.close();
      await relays.close();
    },
  };
}
