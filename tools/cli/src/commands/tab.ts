// `fedai tab topup | balance | history | refund`: the API key's prepaid tab, through the router's
// tab routes (POST /v1/tabs/topup, GET /v1/tabs/me, POST /v1/tabs/faucet, POST /v1/tabs/refund).
import { z } from 'zod';
import { fail, printJson } from '../output';
import { agoText, formatTable, groupDigits, msatAsSat } from '../table';
import { callJson, type RouterFlags, routerTarget } from './client';

interface TabFlags extends RouterFlags {
  json?: boolean;
}

const msat = z.number().int().nonnegative();
const invoiceAnswer = z.looseObject({
  payment_hash: z.string(),
  bolt11: z.string().min(10),
  amount_msat: msat,
  expires_at: z.number().int(),
});
const faucetAnswer = z.looseObject({ payment_hash: z.string(), credited_msat: msat });
const chargeSchema = z.looseObject({
  request_id: z.string(),
  node: z.string(),
  amount_msat: msat,
  node_msat: msat,
  router_msat: msat,
  receipt: z.looseObject({ id: z.string(), pubkey: z.string(), content: z.string() }),
  created_at: z.union([z.string(), z.number()]),
});
const tabAnswer = z.looseObject({
  account: z.string(),
  balance_msat: msat,
  reserved_msat: msat,
  charges: z.array(chargeSchema),
});
const refundAnswer = z.looseObject({
  payment_hash: z.string(),
  amount_msat: msat,
  balance_msat: msat,
  state: z.enum(['succeeded', 'pending']),
});
/** What the history shows from a receipt's content, when it has it (the record is node-signed). */
const receiptTokens = z.looseObject({ tokens_in: z.number().int(), tokens_out: z.number().int() });

const amountText = (n: number) => `${groupDigits(n)} msat (${msatAsSat(n)} sat)`;

function keyed(flags: TabFlags): { routerUrl: string; headers: Record<string, string>; devnet: boolean } {
  const target = routerTarget(flags);
  if (!target.apiKey) fail('NO_API_KEY', 'no API key: a tab belongs to an API key');
  return {
    routerUrl: target.routerUrl,
    headers: { authorization: `Bearer ${target.apiKey}` },
    devnet: target.devnet,
  };
}

export async function tabTopup(amount: string, flags: TabFlags & { faucet?: boolean }): Promise<void> {
  const amountMsat = Number(amount);
  if (!Number.isSafeInteger(amountMsat) || amountMsat < 1000)
    fail('BAD_OPTION', `the amount "${amount}" is not a whole number of msat from 1000 up`, {
      fix: 'pnpm fedai tab topup 100000   (msat; 1 sat = 1000 msat)',
    });
  const { routerUrl, headers, devnet } = keyed(flags);
  const invoice = await callJson(routerUrl, '/v1/tabs/topup', invoiceAnswer, {
    method: 'POST',
    headers,
    body: JSON.stringify({ amount_msat: amountMsat }),
  });
  // The local network pays its own invoices from the settlement faucet; elsewhere pay it yourself.
  const useFaucet = flags.faucet ?? devnet;
  let balanceMsat: number | undefined;
  if (useFaucet) {
    await callJson(routerUrl, '/v1/tabs/faucet', faucetAnswer, {
      method: 'POST',
      headers,
      body: JSON.stringify({ bolt11: invoice.bolt11 }),
    });
    balanceMsat = (await callJson(routerUrl, '/v1/tabs/me', tabAnswer, { headers })).balance_msat;
  }
  if (flags.json)
    return printJson({
      ...invoice,
      paid_from_faucet: useFaucet,
      ...(balanceMsat !== undefined ? { balance_msat: balanceMsat } : {}),
    });
  process.stdout.write(
    `invoice for ${amountText(invoice.amount_msat)}, expires ${new Date(invoice.expires_at * 1000).toISOString()}:\n${invoice.bolt11}\n`,
  );
  if (balanceMsat !== undefined)
    process.stdout.write(`paid from the devnet faucet; tab balance ${amountText(balanceMsat)}\n`);
  else process.stdout.write('pay it with any Lightning wallet; the tab is credited once it is paid.\n');
}

export async function tabBalance(flags: TabFlags): Promise<void> {
  const { routerUrl, headers } = keyed(flags);
  const tab = await callJson(routerUrl, '/v1/tabs/me', tabAnswer, { headers });
  if (flags.json)
    return printJson({
      account: tab.account,
      balance_msat: tab.balance_msat,
      reserved_msat: tab.reserved_msat,
    });
  process.stdout.write(
    `balance   ${amountText(tab.balance_msat)}\nreserved  ${amountText(tab.reserved_msat)} (held for requests in flight)\n`,
  );
}

export async function tabHistory(flags: TabFlags): Promise<void> {
  const { routerUrl, headers } = keyed(flags);
  const tab = await callJson(routerUrl, '/v1/tabs/me', tabAnswer, { headers });
  if (flags.json) return printJson(tab.charges);
  if (tab.charges.length === 0) {
    process.stdout.write('no charges yet.\n');
    return;
  }
  const now = Date.now();
  process.stdout.write(
    formatTable(
      [
        { header: 'WHEN', align: 'right' },
        { header: 'REQUEST' },
        { header: 'NODE' },
        { header: 'TOKENS in+out', align: 'right' },
        { header: 'COST msat', align: 'right' },
        { header: 'RECEIPT' },
      ],
      tab.charges.map((c) => {
        const tokens = receiptTokens.safeParse(safeJson(c.receipt.content)).data;
        const at = new Date(c.created_at).getTime();
        return [
          Number.isNaN(at) ? String(c.created_at) : `${agoText(now - at)} ago`,
          c.request_id,
          `${c.node.slice(0, 12)}…`,
          tokens ? `${tokens.tokens_in}+${tokens.tokens_out}` : '?',
          groupDigits(c.amount_msat),
          `${c.receipt.id.slice(0, 16)}…`,
        ];
      }),
    ),
  );
  process.stdout.write(
    `${tab.charges.length} most recent charges; each receipt is signed by its node (--json prints them whole)\n`,
  );
}

export async function tabRefund(bolt11: string, flags: TabFlags): Promise<void> {
  if (!/^ln[a-z0-9]+$/i.test(bolt11))
    fail('BAD_OPTION', 'that is not a BOLT11 invoice', { fix: 'pass the invoice your wallet made (lnbc…)' });
  const { routerUrl, headers } = keyed(flags);
  const refund = await callJson(routerUrl, '/v1/tabs/refund', refundAnswer, {
    method: 'POST',
    headers,
    body: JSON.stringify({ bolt11 }),
    timeoutMs: 60_000,
  });
  if (flags.json) return printJson(refund);
  process.stdout.write(
    `${refund.state === 'succeeded' ? 'refunded' : 'refund pending (settlement finishes it)'}: ${amountText(refund.amount_msat)}; tab balance ${amountText(refund.balance_msat)}\n`,
  );
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
