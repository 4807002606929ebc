// Commands that use the SDK (chat, quote): a client for the target router, and SDK errors as one line.
import { FedAiClient, FedAiSdkError } from '@fed-ai/sdk';
import { fail } from '../output';
import { type RouterFlags, routerTarget } from './client';

export function clientFor(flags: RouterFlags): {
  client: FedAiClient;
  routerUrl: string;
  model: string | undefined;
} {
  const target = routerTarget(flags);
  if (!target.apiKey) fail('NO_API_KEY', 'no API key');
  return {
    client: new FedAiClient({ routerUrl: target.routerUrl, apiKey: target.apiKey }),
    routerUrl: target.routerUrl,
    model: target.model,
  };
}

/** An SDK failure as one line; a network failure names the router and exits 3. */
export function failSdk(error: unknown, routerUrl: string): never {
  const e = FedAiSdkError.from(error);
  if (e.code === 'NETWORK')
    fail('ROUTER_UNREACHABLE', `the router at ${routerUrl} is unreachable (${e.message})`);
  fail(e.code, e.message, e.hint ? { fix: e.hint } : {});
}
