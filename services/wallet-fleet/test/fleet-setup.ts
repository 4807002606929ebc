// Test support: an owner's agent wallet with a day budget, funded through the treasury (an invoice
// the fleet made, paid by settlement's devnet faucet; a running fleet's sweeper credits it) and a
// move, as the owner API does it. The fleet object may be a running service's or one on its database.
import type { RunningSettlement } from '@fed-ai/settlement';
import type { Fleet } from '../src/fleet';

export async function fundedAgentWallet(
  fleet: Fleet,
  settlement: RunningSettlement,
  owner: string,
  o: { name: string; fundMsat: number; dailyMsat: number },
): Promise<{ walletId: string; clientKey: Uint8Array }> {
  const wallet = await fleet.createWallet(owner, {
    name: o.name,
    policy: {
      version: 1,
      mode: 'live',
      budgets: [
        { id: 'daily', limitMsat: o.dailyMsat, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } },
      ],
      methods: ['pay_invoice', 'get_balance'],
    },
  });
  const before = await fleet.balanceMsat(`treasury:${owner}`);
  const invoice = await fleet.makeInvoice(owner, null, {
    amountMsat: o.fundMsat,
    description: 'treasury',
    expirySeconds: 600,
  });
  await settlement.books.faucetPay(invoice.bolt11);
  for (let i = 0; i < 600 && (await fleet.balanceMsat(`treasury:${owner}`)) < before + o.fundMsat; i++)
    await new Promise((r) => setTimeout(r, 100));
  await fleet.moveFunds(owner, wallet.id, o.fundMsat, `fund-${o.name}`);
  const { secretHex } = await fleet.connect(owner, wallet.id, { name: o.name });
  return { walletId: wallet.id, clientKey: Uint8Array.from(Buffer.from(secretHex, 'hex')) };
}
