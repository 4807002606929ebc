// One-shot (compose service `lightning-init`): creates settlement's wallet and the devnet mint wallet
// at lightning-devnet and writes their admin keys as an env file settlement sources
// (LNBITS_ADMIN_KEY, LNBITS_FAUCET_KEY). Idempotent: keys already written and still accepted by
// lightning-devnet are kept. Devnet only: the mint wallet is where devnet money is created.
//   LIGHTNING_URL (default http://127.0.0.1:7400), DEVNET_ADMIN_KEY (required), OUT (default
//   /run/fedai/lnbits.env).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const url = (process.env.LIGHTNING_URL ?? 'http://127.0.0.1:7400').replace(/\/+$/, '');
const adminKey = process.env.DEVNET_ADMIN_KEY;
const out = process.env.OUT ?? '/run/fedai/lnbits.env';
if (!adminKey) {
  console.error('devnet-wallets: DEVNET_ADMIN_KEY is required');
  process.exit(2);
}

async function waitHealthy() {
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${url} did not become healthy in 60 s`);
}

async function accepted(key) {
  const response = await fetch(`${url}/api/v1/wallet`, { headers: { 'x-api-key': key } });
  return response.ok;
}

async function create(name, mint) {
  const response = await fetch(`${url}/devnet/wallets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': adminKey },
    body: JSON.stringify({ name, mint }),
  });
  const body = await response.json();
  if (response.status !== 201 || typeof body.adminkey !== 'string')
    throw new Error(`creating wallet ${name}: HTTP ${response.status}`);
  return body.adminkey;
}

await waitHealthy();
if (existsSync(out)) {
  const saved = Object.fromEntries(
    readFileSync(out, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  if (
    saved.LNBITS_ADMIN_KEY &&
    saved.LNBITS_FAUCET_KEY &&
    (await accepted(saved.LNBITS_ADMIN_KEY)) &&
    (await accepted(saved.LNBITS_FAUCET_KEY))
  ) {
    console.log(`devnet-wallets: keeping the wallets in ${out}`);
    process.exit(0);
  }
}
const settlementKey = await create('settlement', false);
const mintKey = await create('mint', true);
writeFileSync(`${out}.tmp`, `LNBITS_ADMIN_KEY=${settlementKey}\nLNBITS_FAUCET_KEY=${mintKey}\n`, {
  mode: 0o600,
});
renameSync(`${out}.tmp`, out);
console.log(`devnet-wallets: created settlement and mint wallets, keys in ${out}`);
