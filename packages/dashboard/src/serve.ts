// GET /dashboard (the page), /dashboard/app.js and /dashboard/app.css. The script is bundled from
// web/main.ts by esbuild on the first request for it and kept in memory for the life of the
// process (one bundle serves every app: the page's data-app attribute picks the pages). The page
// holds no inline script or style, so the policy below needs no 'unsafe-inline' and no nonce.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendError } from '@fed-ai/kit';
import type { FastifyInstance, FastifyReply } from 'fastify';

export type DashboardApp = 'router' | 'fleet';

/** Everything from this origin only; no inline script, no eval, no frames, no plugins, no forms. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const TITLES: Record<DashboardApp, string> = {
  router: 'fed-ai router: operator dashboard',
  fleet: 'fed-ai wallet fleet: owner dashboard',
};

const ENTRY = fileURLToPath(new URL('../web/main.ts', import.meta.url));

interface Bundle {
  js: string;
  css: string;
}

let bundled: Promise<Bundle> | null = null;

async function buildBundle(): Promise<Bundle> {
  // Loaded when first needed: a service that never serves the page never loads esbuild.
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    outdir: '/dashboard',
    minify: true,
    legalComments: 'none',
    sourcemap: false,
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text;
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '';
  if (!js) throw new Error('dashboard bundle: esbuild wrote no script');
  return { js, css };
}

/**
 * A bundle built ahead (container images: tools/containers/src/bundle.mjs writes app.js and
 * app.css to the folder FEDAI_DASHBOARD_DIR names, since an image has neither web/ nor esbuild).
 */
async function prebuiltBundle(dir: string): Promise<Bundle> {
  const [js, css] = await Promise.all([
    readFile(join(dir, 'app.js'), 'utf8'),
    readFile(join(dir, 'app.css'), 'utf8').catch(() => ''),
  ]);
  return { js, css };
}

/** The bundle, built (or read) once per process; a failure is tried again on the next request. */
function dashboardBundle(): Promise<Bundle> {
  const dir = process.env.FEDAI_DASHBOARD_DIR;
  bundled ??= (dir ? prebuiltBundle(dir) : buildBundle()).catch((error: unknown) => {
    bundled = null;
    throw error;
  });
  return bundled;
}

function page(app: DashboardApp): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${TITLES[app]}</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script type="module" src="/dashboard/app.js"></script>
</head>
<body data-app="${app}">
<main id="app"><p>Loading…</p></main>
</body>
</html>
`;
}

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin');
}

export function registerDashboard(app: FastifyInstance, options: { app: DashboardApp }): void {
  const html = page(options.app);
  app.get('/dashboard', async (_request, reply) =>
    secure(reply).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(html),
  );
  const asset = (kind: keyof Bundle, type: string) => async (_request: unknown, reply: FastifyReply) => {
    let bundle: Bundle;
    try {
      bundle = await dashboardBundle();
    } catch (error) {
      reply.log.error({ err: error }, 'dashboard bundle failed');
      return sendError(secure(reply), 'INTERNAL', 'The dashboard could not be built.');
    }
    return secure(reply).header('cache-control', 'no-cache').type(type).send(bundle[kind]);
  };
  app.get('/dashboard/app.js', asset('js', 'text/javascript; charset=utf-8'));
  app.get('/dashboard/app.css', asset('css', 'text/css; charset=utf-8'));
}
