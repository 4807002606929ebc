// BOLT11 invoices with the bolt11 package (encode, sign, decode). Our invoices are real, signed
// BOLT11 strings on regtest (`lnbcrt`), checked back by decoding.
import { createHash, randomBytes } from 'node:crypto';
import bolt11 from 'bolt11';

export const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] };
/** The bolt11 package knows mainnet and testnet only; signet (`lntbs`) is named here. */
const SIGNET = { bech32: 'tbs', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] };

export interface EncodedInvoice {
  bolt11: string;
  paymentHash: string;
  preimage: string;
  createdAtS: number;
  expiresAtS: number;
}

export function sha256Hex(hex: string): string {
  return createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
}

/** A fresh preimage, its payment hash, and a signed BOLT11 for `amountMsat`. */
export function encodeInvoice(input: {
  amountMsat: number;
  description: string;
  expirySeconds: number;
  nodeSecretKeyHex: string;
  nowS?: number;
  /** Commit to a description by its sha256 (LNURL-pay, LUD-06) instead of carrying the text. */
  descriptionHash?: string;
}): EncodedInvoice {
  const preimage = randomBytes(32).toString('hex');
  const paymentHash = sha256Hex(preimage);
  const createdAtS = input.nowS ?? Math.floor(Date.now() / 1000);
  const unsigned = bolt11.encode({
    network: REGTEST,
    millisatoshis: String(input.amountMsat),
    timestamp: createdAtS,
    tags: [
      { tagName: 'payment_hash', data: paymentHash },
      { tagName: 'payment_secret', data: randomBytes(32).toString('hex') },
      input.descriptionHash
        ? { tagName: 'purpose_commit_hash', data: input.descriptionHash }
        : { tagName: 'description', data: input.description.slice(0, 600) },
      { tagName: 'expire_time', data: input.expirySeconds },
      { tagName: 'min_final_cltv_expiry', data: 18 },
    ],
  });
  const signed = bolt11.sign(unsigned, input.nodeSecretKeyHex);
  if (!signed.paymentRequest) throw new Error('bolt11 signing produced no payment request');
  return {
    bolt11: signed.paymentRequest,
    paymentHash,
    preimage,
    createdAtS,
    expiresAtS: createdAtS + input.expirySeconds,
  };
}

export type BitcoinNetwork = 'mainnet' | 'testnet' | 'signet' | 'regtest';

/** The network a BOLT11 string is for, from its human-readable prefix (BOLT 11); null if none. */
export function invoiceNetwork(paymentRequest: string): BitcoinNetwork | null {
  const text = paymentRequest.trim().toLowerCase();
  // Longest prefixes first: lnbcrt starts with lnbc, lntbs with lntb.
  if (text.startsWith('lnbcrt')) return 'regtest';
  if (text.startsWith('lntbs')) return 'signet';
  if (text.startsWith('lntb')) return 'testnet';
  if (text.startsWith('lnbc')) return 'mainnet';
  return null;
}

export interface DecodedInvoice {
  paymentHash: string;
  amountMsat: number;
  payee: string;
  expiresAtS: number;
  description: string;
  /** The `h` field (sha256 of a description the invoice commits to), lower-case hex; '' if none. */
  descriptionHash: string;
}

/** Decodes and checks the signature of a BOLT11 string (mainnet, testnet, signet or regtest). */
export function decodeInvoice(paymentRequest: string): DecodedInvoice {
  const text = paymentRequest.trim().toLowerCase();
  const network = invoiceNetwork(text);
  const decoded = bolt11.decode(
    text,
    network === 'regtest' ? REGTEST : network === 'signet' ? SIGNET : undefined,
  );
  const tag = (name: string) => decoded.tags.find((t) => t.tagName === name)?.data;
  const paymentHash = tag('payment_hash');
  if (typeof paymentHash !== 'string') throw new Error('invoice has no payment hash');
  const msat = decoded.millisatoshis ? Number(decoded.millisatoshis) : Number.NaN;
  if (!Number.isSafeInteger(msat) || msat <= 0) throw new Error('invoice has no amount');
  const expire = Number(tag('expire_time') ?? 3600);
  return {
    paymentHash,
    amountMsat: msat,
    payee: decoded.payeeNodeKey ?? '',
    expiresAtS: (decoded.timestamp ?? 0) + expire,
    description: typeof tag('description') === 'string' ? (tag('description') as string) : '',
    descriptionHash:
      typeof tag('purpose_commit_hash') === 'string'
        ? (tag('purpose_commit_hash') as string).toLowerCase()
        : '',
  };
}
