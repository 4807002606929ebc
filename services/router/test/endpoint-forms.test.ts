// Issue #9 B: IPv6 transition forms that embed a private IPv4 (or are not routable at all) are never
// public; endpoint URLs normalise to one form and one uniqueness key per socket and path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkEndpoint, classifyAddress, normaliseEndpoint } from '@fed-ai/kit';

const notPublic: [string, string][] = [
  ['::7f00:1', 'IPv4-compatible loopback (hex)'],
  ['::127.0.0.1', 'IPv4-compatible loopback (dotted)'],
  ['::a00:1', 'IPv4-compatible 10.0.0.1'],
  ['::5db8:d822', 'IPv4-compatible public: deprecated, not routable'],
  ['::ffff:0:7f00:1', 'SIIT loopback'],
  ['::ffff:0:a9fe:a9fe', 'SIIT 169.254.169.254'],
  ['::ffff:0:5db8:d822', 'SIIT public: not routable'],
  ['2002:7f00:1::', '6to4 of 127.0.0.1'],
  ['2002:a00:1::1', '6to4 of 10.0.0.1'],
  ['2002:a9fe:a9fe::', '6to4 of 169.254.169.254'],
  ['2002:c0a8:101::', '6to4 of 192.168.1.1'],
  ['64:ff9b::7f00:1', 'NAT64 of 127.0.0.1'],
  ['64:ff9b::127.0.0.1', 'NAT64 of 127.0.0.1 (dotted)'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 of 169.254.169.254'],
  ['64:ff9b::5db8:d822', 'NAT64 of a public address (translator is local)'],
  ['64:ff9b:1::7f00:1', 'local-use NAT64'],
  ['64:ff9b:1:ffff::5db8:d822', 'local-use NAT64, public suffix'],
  ['2001::1', 'Teredo'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo (XOR-ed client)'],
  ['2001:0:0:0:0:0:7f00:1', 'Teredo, loopback-looking suffix'],
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
  ['::ffff:7f00:1', 'IPv4-mapped loopback (hex)'],
  ['0:0:0:0:0:FFFF:7F00:0001', 'IPv4-mapped loopback (long, upper case)'],
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['0000:0000:0000:0000:0000:0000:0000:0001', 'loopback (long)'],
  ['fe80::1%eth0', 'link-local with zone'],
  ['fec0::1', 'site-local (deprecated)'],
  ['fd00::1', 'unique local'],
  ['ff02::1', 'multicast'],
  ['2001:db8::1', 'documentation'],
  ['3fff::1', 'documentation (RFC 9637)'],
  ['100::1', 'discard-only'],
  ['4000::1', 'outside global unicast 2000::/3'],
  ['192.88.99.1', '6to4 relay anycast'],
  ['[::7f00:1]', 'bracketed'],
];

test('every IPv6 transition form of a private, loopback or reserved address is not public', () => {
  for (const [address, name] of notPublic) {
    const cls = classifyAddress(address);
    assert.notEqual(cls, 'public', `${name} (${address}) classed public`);
    assert.notEqual(cls, 'invalid', `${name} (${address}) did not parse`);
  }
  assert.equal(classifyAddress('::7f00:1'), 'loopback');
  assert.equal(classifyAddress('2002:a00:1::1'), 'private', '6to4 judges the embedded IPv4');
  assert.equal(classifyAddress('64:ff9b::a9fe:a9fe'), 'link_local', 'NAT64 judges the embedded IPv4');
});

test('ordinary public addresses stay public', () => {
  for (const address of [
    '2606:4700:4700::1111',
    '2a00:1450:4001:81b::200e',
    '::ffff:93.184.216.34',
    '2002:5db8:d822::1',
    '93.184.216.34',
  ]) {
    assert.equal(classifyAddress(address), 'public', address);
  }
  assert.equal(classifyAddress('not-an-ip'), 'invalid');
  assert.equal(classifyAddress('1:2:3:4:5:6:7:8:9'), 'invalid');
});

test('registration refuses every URL form of these addresses with PRIVATE_ENDPOINT', async () => {
  const forms = [
    'http://[::7f00:1]:7100',
    'http://[::127.0.0.1]:7100',
    'http://[::ffff:0:7f00:1]',
    'http://[2002:7f00:1::]',
    'http://[64:ff9b::7f00:1]',
    'http://[64:ff9b:1::a00:1]',
    'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]',
    'http://[::ffff:7f00:1]:8080/fedai',
  ];
  const lookup = async () => {
    throw new Error('IP literals must not be resolved');
  };
  for (const endpoint of forms) {
    const check = await checkEndpoint(endpoint, { allowPrivate: false, lookup });
    assert.equal(check.ok ? 'ok' : check.code, 'PRIVATE_ENDPOINT', endpoint);
  }
  // A name that resolves to one of these forms is refused the same way.
  const named = await checkEndpoint('http://sneaky.example', {
    allowPrivate: false,
    lookup: async () => ['2606:4700::1111', '2002:7f00:1::'],
  });
  assert.equal(named.ok ? 'ok' : named.code, 'PRIVATE_ENDPOINT');
  const ok = await checkEndpoint('http://[2606:4700::1111]:7100', { allowPrivate: false, lookup });
  assert.equal(ok.ok, true);
});

test('endpoint normalisation: one form and one uniqueness key; query, fragment and userinfo refused', () => {
  const keyOf = (raw: string) => {
    const form = normaliseEndpoint(raw);
    assert.ok(form.ok, `${raw}: ${form.ok ? '' : form.detail}`);
    return form.ok ? form : undefined;
  };
  const base = keyOf('http://127.0.0.1:7100')!;
  assert.equal(base.endpoint, 'http://127.0.0.1:7100');
  for (const same of [
    'http://127.0.0.1:7100/',
    'http://localhost:7100',
    'HTTP://LOCALHOST:7100/',
    'http://[::1]:7100',
    'http://127.1:7100',
    'http://127.9.9.9:7100',
    'http://[::ffff:127.0.0.1]:7100',
  ]) {
    assert.equal(keyOf(same)!.key, base.key, same);
  }
  assert.equal(keyOf('http://EXAMPLE.com:80/')!.endpoint, 'http://example.com');
  assert.equal(keyOf('http://EXAMPLE.com:80/')!.key, keyOf('http://example.com')!.key);
  assert.equal(keyOf('https://example.com:443/fedai/')!.endpoint, 'https://example.com/fedai');
  assert.equal(keyOf('http://[::ffff:93.184.216.34]')!.key, keyOf('http://93.184.216.34:80')!.key);
  assert.notEqual(keyOf('http://example.com:8080')!.key, keyOf('http://example.com')!.key);
  for (const bad of [
    'http://127.0.0.1:7100/?x',
    'http://127.0.0.1:7100/#x',
    'http://127.0.0.1:7100?',
    'http://127.0.0.1:7100#',
    'http://user:pw@127.0.0.1:7100',
    'http://@127.0.0.1:7100',
    'http://127.0.0.1:7100/a%20b',
    'http://127.0.0.1:7100//x',
    'ftp://127.0.0.1',
    'not a url',
  ]) {
    const form = normaliseEndpoint(bad);
    assert.equal(form.ok ? 'ok' : form.code, 'BAD_ENDPOINT', bad);
  }
});
