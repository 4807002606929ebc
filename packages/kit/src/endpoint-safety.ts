// Node endpoints must be public addresses unless the operator allows private ones (local
// networks do). Checked at registration AND again at connect time, so a name that later resolves
// to a private address (DNS rebinding) is still refused.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent } from 'undici';

export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link_local'
  | 'cgnat'
  | 'unspecified'
  | 'multicast'
  | 'reserved'
  | 'invalid';

const ipv4Ranges: [AddressClass, string, number][] = [
  ['unspecified', '0.0.0.0', 8],
  ['private', '10.0.0.0', 8],
  ['cgnat', '100.64.0.0', 10],
  ['loopback', '127.0.0.0', 8],
  ['link_local', '169.254.0.0', 16],
  ['private', '172.16.0.0', 12],
  ['reserved', '192.0.0.0', 24],
  ['reserved', '192.0.2.0', 24],
  ['reserved', '192.88.99.0', 24],
  ['private', '192.168.0.0', 16],
  ['reserved', '198.18.0.0', 15],
  ['reserved', '198.51.100.0', 24],
  ['reserved', '203.0.113.0', 24],
  ['multicast', '224.0.0.0', 4],
  ['reserved', '240.0.0.0', 4],
];

// IPv6 outside these is judged by the structure below: only global unicast (2000::/3) can be
// public, and the transition forms that embed an IPv4 address are judged by that address.
const ipv6Ranges: [AddressClass, string, number][] = [
  ['reserved', '100::', 64],
  ['reserved', '2001::', 23], // IETF protocol assignments, Teredo (2001::/32) among them
  ['reserved', '2001:db8::', 32],
  ['reserved', '3fff::', 20],
  ['private', 'fc00::', 7],
  ['link_local', 'fe80::', 10],
  ['private', 'fec0::', 10],
  ['multicast', 'ff00::', 8],
];

function buildLists(ranges: [AddressClass, string, number][], family: 'ipv4' | 'ipv6') {
  const lists = new Map<AddressClass, BlockList>();
  for (const [cls, net, prefix] of ranges) {
    let list = lists.get(cls);
    if (!list) {
      list = new BlockList();
      lists.set(cls, list);
    }
    list.addSubnet(net, prefix, family);
  }
  return lists;
}
const ipv4Lists = buildLists(ipv4Ranges, 'ipv4');
const ipv6Lists = buildLists(ipv6Ranges, 'ipv6');

export function classifyAddress(ip: string): AddressClass {
  let address = ip.replace(/^\[|\]$/g, '');
  const zone = address.indexOf('%');
  if (zone !== -1) address = address.slice(0, zone);
  const family = isIP(address);
  if (family === 4) return classifyIpv4(address);
  if (family === 6) {
    const groups = ipv6Groups(address);
    return groups ? classifyIpv6(groups) : 'invalid';
  }
  return 'invalid';
}

function classifyIpv4(address: string): AddressClass {
  if (address === '255.255.255.255') return 'reserved';
  for (const [cls, list] of ipv4Lists) if (list.check(address, 'ipv4')) return cls;
  return 'public';
}

/** Judges the IPv4 address embedded in a transition form: never public unless `publicOk`. */
function embedded(hi: number, lo: number, publicOk: boolean): AddressClass {
  const cls = classifyIpv4(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  return cls === 'public' && !publicOk ? 'reserved' : cls;
}

function classifyIpv6(g: number[]): AddressClass {
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 6)) {
    if (g[6] === 0 && g[7] === 0) return 'unspecified';
    if (g[6] === 0 && g[7] === 1) return 'loopback';
    return embedded(g[6]!, g[7]!, false); // IPv4-compatible ::a.b.c.d (deprecated)
  }
  if (zeros(0, 5) && g[5] === 0xffff) return embedded(g[6]!, g[7]!, true); // IPv4-mapped
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return embedded(g[6]!, g[7]!, false); // SIIT
  if (g[0] === 0x64 && g[1] === 0xff9b) {
    if (zeros(2, 6)) return embedded(g[6]!, g[7]!, false); // NAT64 well-known prefix 64:ff9b::/96
    return 'reserved'; // 64:ff9b:1::/48 local-use NAT64 and the rest of 64:ff9b::/32
  }
  if (g[0] === 0x2002) return embedded(g[1]!, g[2]!, true); // 6to4 2002:AABB:CCDD::
  const text = g.map((x) => x.toString(16)).join(':');
  for (const [cls, list] of ipv6Lists) if (list.check(text, 'ipv6')) return cls;
  // Only global unicast 2000::/3 is routable on the internet.
  if ((g[0]! & 0xe000) !== 0x2000) return 'reserved';
  return 'public';
}

/**
 * The eight 16-bit groups of an IPv6 address. WHATWG URL serialises any valid form (embedded
 * dotted IPv4, leading zeros, upper case) to canonical compressed hex first.
 */
export function ipv6Groups(address: string): number[] | null {
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  const halves = canonical.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string | undefined) =>
    part ? part.split(':').map((h) => Number.parseInt(h, 16)) : [];
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...tail];
  if (groups.length !== 8 || groups.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffff)) return null;
  return groups;
}

export type Lookup = (host: string) => Promise<string[]>;

const systemLookup: Lookup = (host) =>
  new Promise((resolve, reject) => {
    dnsLookup(host, { all: true }, (error, addresses: LookupAddress[]) => {
      if (error) reject(error);
      else resolve(addresses.map((a) => a.address));
    });
  });

export type EndpointCheck =
  | {
      ok: true;
      url: URL;
      /** Normalised form that is stored and called: scheme://host[:port][/path], no trailing slash. */
      endpoint: string;
      /** Uniqueness key: every spelling of the same socket and path maps to one key. */
      key: string;
    }
  | { ok: false; code: 'PRIVATE_ENDPOINT' | 'INVALID_REQUEST' | 'BAD_ENDPOINT'; detail: string };

export type EndpointForm =
  | { ok: true; url: URL; endpoint: string; key: string }
  | { ok: false; code: 'BAD_ENDPOINT'; detail: string };

const CLEAN_PATH = /^(\/[A-Za-z0-9._~-]+)*$/;
const DEFAULT_PORT: Record<string, string> = { 'http:': '80', 'https:': '443' };

/**
 * Parses and normalises an endpoint URL, refusing anything but http(s)://host[:port][/clean/path]:
 * no query, no fragment, no credentials (refused even when empty, as in `/?` or `@host`).
 */
export function normaliseEndpoint(raw: string): EndpointForm {
  const bad = (detail: string) => ({ ok: false as const, code: 'BAD_ENDPOINT' as const, detail });
  if (raw.length > 2048) return bad('endpoint is too long');
  if (/[?#@\\\s]/.test(raw)) return bad('no query, fragment, credentials or whitespace in endpoint URLs');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return bad('endpoint is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad('endpoint must be http or https');
  if (url.username || url.password || url.search || url.hash) return bad('no query, fragment or credentials');
  const path = url.pathname.replace(/\/+$/, '');
  if (!CLEAN_PATH.test(path)) return bad('endpoint path must be a clean prefix like /fedai');
  let host = url.hostname.toLowerCase().replace(/\.$/, '');
  if (host === '') return bad('endpoint has no host');
  const port = url.port || DEFAULT_PORT[url.protocol]!;
  const endpoint = `${url.protocol}//${url.host.toLowerCase()}${path}`;
  // Every loopback spelling is one host for uniqueness; an IPv4-mapped IPv6 literal is its IPv4.
  const bare = host.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) host = 'loopback';
  else if (isIP(bare) !== 0) {
    const cls = classifyAddress(bare);
    if (cls === 'loopback' || cls === 'unspecified') host = 'loopback';
    else if (isIP(bare) === 6) {
      const g = ipv6Groups(bare) ?? [];
      const mapped = g.length === 8 && g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
      if (mapped) host = `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
      else if (g.length === 8) host = `[${g.map((x) => x.toString(16)).join(':')}]`;
    }
  }
  return { ok: true, url: new URL(endpoint), endpoint, key: `${host}:${port}${path.toLowerCase()}` };
}

export async function checkEndpoint(
  raw: string,
  options: { allowPrivate: boolean; lookup?: Lookup },
): Promise<EndpointCheck> {
  const form = normaliseEndpoint(raw);
  if (!form.ok) return form;
  const { url } = form;
  if (options.allowPrivate) return form;
  // WHATWG URL already normalised decimal/octal/hex IPv4 forms (http://2130706433/ -> 127.0.0.1).
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = await (options.lookup ?? systemLookup)(host);
    } catch {
      return { ok: false, code: 'INVALID_REQUEST', detail: `cannot resolve ${host}` };
    }
  }
  if (addresses.length === 0)
    return { ok: false, code: 'INVALID_REQUEST', detail: `${host} has no addresses` };
  for (const address of addresses) {
    const cls = classifyAddress(address);
    if (cls !== 'public')
      return { ok: false, code: 'PRIVATE_ENDPOINT', detail: `${host} is ${cls} (${address})` };
  }
  return form;
}

/**
 * An undici Agent whose DNS lookup refuses non-public addresses at connect time (unless allowed),
 * so what was checked at registration is what is connected to.
 */
export function createSafeAgent(options: {
  allowPrivate: boolean;
  connectTimeoutMs?: number;
  connections?: number;
}): Agent {
  const lookup = (
    hostname: string,
    lookupOptions: object,
    callback: (
      error: NodeJS.ErrnoException | null,
      address: string | LookupAddress[],
      family?: number,
    ) => void,
  ) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, []);
      if (!options.allowPrivate) {
        const bad = addresses.find((a) => classifyAddress(a.address) !== 'public');
        if (bad) {
          const refused = Object.assign(
            new Error(`refusing to connect to ${classifyAddress(bad.address)} address ${bad.address}`),
            {
              code: 'PRIVATE_ENDPOINT',
            },
          );
          return callback(refused, []);
        }
      }
      const all = (lookupOptions as { all?: boolean }).all;
      if (all) return callback(null, addresses);
      const first = addresses[0]!;
      return callback(null, first.address, first.family);
    });
  };
  return new Agent({
    connect: { timeout: options.connectTimeoutMs ?? 5_000, lookup: lookup as never },
    connections: options.connections ?? 256,
    headersTimeout: 0,
    bodyTimeout: 0,
    // For a server that sends no keep-alive hint: shorter than common server timeouts (Node's 5 s
    // default less a margin), so an idle socket is dropped here before the server drops it.
    keepAliveTimeout: 4_000,
  });
}
