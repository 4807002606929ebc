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

const ranges: [AddressClass, string, number, 'ipv4' | 'ipv6'][] = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['cgnat', '100.64.0.0', 10, 'ipv4'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link_local', '169.254.0.0', 16, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'],
  ['reserved', '192.0.2.0', 24, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['reserved', '198.18.0.0', 15, 'ipv4'],
  ['reserved', '198.51.100.0', 24, 'ipv4'],
  ['reserved', '203.0.113.0', 24, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['reserved', '64:ff9b::', 96, 'ipv6'],
  ['reserved', '100::', 64, 'ipv6'],
  ['reserved', '2001:db8::', 32, 'ipv6'],
  ['private', 'fc00::', 7, 'ipv6'],
  ['link_local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
];

const lists = new Map<AddressClass, BlockList>();
for (const [cls, net, prefix, family] of ranges) {
  let list = lists.get(cls);
  if (!list) {
    list = new BlockList();
    lists.set(cls, list);
  }
  list.addSubnet(net, prefix, family);
}

export function classifyAddress(ip: string): AddressClass {
  let address = ip.replace(/^\[|\]$/g, '');
  const zone = address.indexOf('%');
  if (zone !== -1) address = address.slice(0, zone);
  const family = isIP(address);
  if (family === 0) return 'invalid';
  if (family === 6) {
    // IPv4-mapped (::ffff:a.b.c.d or ::ffff:xxxx:xxxx) and IPv4-compatible forms: judge the IPv4 inside.
    const mapped = address.toLowerCase().match(/^(?:0{0,4}:){0,5}(?:0{0,4}:)?ffff:(.+)$/);
    if (mapped?.[1]) {
      const inner = mapped[1].includes('.') ? mapped[1] : hexPairToIpv4(mapped[1]);
      if (inner) return classifyAddress(inner);
    }
    if (address === '255.255.255.255') return 'reserved';
  }
  if (family === 4 && address === '255.255.255.255') return 'reserved';
  for (const [cls, list] of lists) if (list.check(address, family === 4 ? 'ipv4' : 'ipv6')) return cls;
  return 'public';
}

function hexPairToIpv4(hex: string): string | null {
  const parts = hex.split(':');
  if (parts.length !== 2) return null;
  const hi = Number.parseInt(parts[0]!, 16);
  const lo = Number.parseInt(parts[1]!, 16);
  if (!Number.isFinite(hi) || !Number.isFinite(lo)) return null;
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
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
  | { ok: true; url: URL }
  | { ok: false; code: 'PRIVATE_ENDPOINT' | 'INVALID_REQUEST'; detail: string };

export async function checkEndpoint(
  raw: string,
  options: { allowPrivate: boolean; lookup?: Lookup },
): Promise<EndpointCheck> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, code: 'INVALID_REQUEST', detail: 'endpoint is not a URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, code: 'INVALID_REQUEST', detail: 'endpoint must be http or https' };
  }
  if (url.username || url.password)
    return { ok: false, code: 'INVALID_REQUEST', detail: 'no credentials in endpoint URLs' };
  if (options.allowPrivate) return { ok: true, url };
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
  return { ok: true, url };
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
    keepAliveTimeout: 30_000,
  });
}
