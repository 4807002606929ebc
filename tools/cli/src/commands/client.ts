// Shared by commands that talk to a router: flags first, then ./data/devnet.json.
import { FedAiClient } from '@fed-ai/sdk';
import { readDevnet } from '../devnet-file';
import { EXIT, fail } from '../output';

export interface RouterFlags {
  router?: string;
  apiKey?: string;
  model?: string;
}

export function routerTarget(flags: RouterFlags): {
  routerUrl: string;
  apiKey: string | undefined;
  model: string | undefined;
} {
  const devnet = readDevnet();
  const routerUrl = flags.router ?? process.env.FEDAI_ROUTER_URL ?? devnet?.router_url;
  if (!routerUrl) {
    fail(
      'no router: pass --router URL, set FEDAI_ROUTER_URL, or start a local network with: pnpm fedai up',
      EXIT.usage,
    );
  }
  return {
    routerUrl,
    apiKey: flags.apiKey ?? process.env.FEDAI_API_KEY ?? devnet?.api_key,
    model: flags.model ?? process.env.FEDAI_MODEL_ID ?? devnet?.model,
  };
}

export function clientFor(flags: RouterFlags): { client: FedAiClient; model: string | undefined } {
  const target = routerTarget(flags);
  if (!target.apiKey) fail('no API key: pass --api-key or set FEDAI_API_KEY', EXIT.usage);
  return {
    client: new FedAiClient({ routerUrl: target.routerUrl, apiKey: target.apiKey }),
    model: target.model,
  };
}

export async function getJson(url: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    fail(`cannot reach ${url}: ${error instanceof Error ? error.message : String(error)}`, EXIT.unreachable);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) fail(`${url} answered HTTP ${response.status}: ${JSON.stringify(body)}`, EXIT.failure);
  return body;
}
