// `fedai node ban <id>`: keeps a node out of a router's scheduling for good (the router's
// `POST /admin/nodes/:id/ban`, NIP-98 signed by an operator key). The router has no unban route:
// the ban is stored with the node's row and refuses its heartbeats and registrations from then on
// (NODE_BANNED). The id is the node's pubkey (64 hex), or a prefix of it that names exactly one
// registered node (`fedai nodes` shows the first 12 characters).
import { z } from 'zod';
import { fail, printJson } from '../output';
import { type AdminFlags, admin } from './apikey';
import { callJson, routerTarget } from './client';

const MIN_PREFIX_CHARS = 8;
const nodesAnswer = z.looseObject({
  nodes: z.array(z.looseObject({ id: z.string(), banned: z.boolean() })),
});
const banAnswer = z.looseObject({ ok: z.boolean() });

/** The full node id of `given` (64 hex, or a unique prefix of a node the router lists). */
async function resolveNodeId(given: string, flags: AdminFlags): Promise<string> {
  const id = given.trim().replace(/…$/, '').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(id)) return id;
  if (!new RegExp(`^[0-9a-f]{${MIN_PREFIX_CHARS},63}$`).test(id))
    fail('BAD_OPTION', `a node id is 64 hex characters, or a prefix of at least ${MIN_PREFIX_CHARS}`, {
      fix: 'fedai nodes --json lists the full ids',
    });
  const { routerUrl } = routerTarget(flags);
  const { nodes } = await callJson(routerUrl, '/nodes', nodesAnswer);
  const matches = nodes.filter((n) => n.id.startsWith(id));
  if (matches.length === 1 && matches[0]) return matches[0].id;
  return fail(
    matches.length === 0 ? 'NOT_FOUND' : 'BAD_OPTION',
    matches.length === 0
      ? `no node registered at ${routerUrl} has an id starting with ${id}`
      : `${matches.length} nodes have an id starting with ${id}`,
    { fix: 'fedai nodes --json lists the full ids' },
  );
}

export async function nodeBan(given: string, flags: AdminFlags): Promise<void> {
  const id = await resolveNodeId(given, flags);
  const answer = await admin(flags, 'POST', `/admin/nodes/${id}/ban`, banAnswer);
  // `ok: false`: the router does not know the node (nothing was stored; a ban needs its row).
  if (!answer.ok)
    fail('NOT_FOUND', `the router knows no node ${id}, nothing was banned`, {
      fix: 'fedai nodes --json lists the nodes this router knows',
    });
  if (flags.json) return printJson({ id, banned: true });
  process.stdout.write(`banned ${id}\n`);
}
