// A scriptable LightningBackend for tests: delegates to a real backend (the internal one) and can
// fail a payment definitely, or "crash" around it (the outcome unknown to the caller).
import type {
  CreateInvoiceInput,
  Invoice,
  LightningBackend,
  PaymentResult,
  PaymentStatus,
} from '@fed-ai/lightning';
import { LightningPaymentError } from '@fed-ai/lightning';

export type DoubleMode =
  /** Pass every call through. */
  | 'ok'
  /** payInvoice fails definitely (NO_ROUTE); nothing is paid. */
  | 'fail'
  /** payInvoice pays, then throws as if the connection died; lookups fail too (backend down). */
  | 'pay-then-crash'
  /** payInvoice throws before paying, without saying whether it paid; lookups fail too. */
  | 'crash-before-pay';

export class LightningBackendDouble implements LightningBackend {
  readonly name = 'internal' as const;
  mode: DoubleMode = 'ok';
  payCalls = 0;

  constructor(private readonly real: LightningBackend) {}

  createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    return this.real.createInvoice(input);
  }

  lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    return this.real.lookupInvoice(paymentHash);
  }

  async payInvoice(bolt11: string, options: { maxFeeMsat: number }): Promise<PaymentResult> {
    this.payCalls += 1;
    if (this.mode === 'fail') throw new LightningPaymentError('NO_ROUTE', 'no route (double)', true);
    if (this.mode === 'crash-before-pay') throw new Error('connection reset (double)');
    const paid = await this.real.payInvoice(bolt11, options);
    if (this.mode === 'pay-then-crash') throw new Error('connection reset after paying (double)');
    return paid;
  }

  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    if (this.mode === 'pay-then-crash' || this.mode === 'crash-before-pay')
      throw new Error('backend unreachable (double)');
    return this.real.lookupPayment(paymentHash);
  }

  onSettled(listener: (invoice: Invoice) => void): () => void {
    return this.real.onSettled(listener);
  }
}
