// The dashboard's entry: the login screen (a NIP-07 extension gives the key and signs every call),
// the "not an operator" screen, and the page shell with its tabs. Plain DOM modules: a few tables
// and buttons need no framework, and no framework means nothing more to audit or keep current.
import './app.css';
import { h } from './dom';
import { fleetPages, fleetWhoami } from './fleet-pages';
import { ApiError, api, loginPubkey } from './nostr';
import { routerPages, routerWhoami } from './router-pages';

export type Call = <T>(method: 'GET' | 'POST', path: string, body?: unknown) => Promise<T>;

export interface Page {
  id: string;
  title: string;
  render(call: Call, refresh: () => void): Promise<HTMLElement>;
}

const kind = document.body.dataset.app === 'fleet' ? 'fleet' : 'router';
const APPS = {
  router: {
    name: 'Router',
    pages: routerPages,
    whoami: routerWhoami,
    role: 'operator',
    list: 'OPERATOR_PUBKEYS',
  },
  fleet: {
    name: 'Wallet fleet',
    pages: fleetPages,
    whoami: fleetWhoami,
    role: 'owner',
    list: 'FLEET_OWNER_PUBKEYS',
  },
} as const;
const current = APPS[kind];
const root = document.getElementById('app') as HTMLElement;

/** Auto-refresh: the page on screen is drawn again this often while it is on (off by default). */
const AUTO_REFRESH_MS = 10_000;
let autoRefresh = false;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;

function show(...children: HTMLElement[]): void {
  // Whatever replaces the screen (another page, the login screen) cancels a pending refresh.
  clearTimeout(refreshTimer);
  root.replaceChildren(...children);
}

function header(pubkey?: string): HTMLElement {
  return h(
    'header',
    {},
    h('h1', {}, `fed-ai · ${current.name}`),
    pubkey
      ? h(
          'span',
          { class: 'who' },
          h('code', { 'data-testid': 'pubkey', title: pubkey }, `${pubkey.slice(0, 12)}…`),
          h('button', { type: 'button', 'data-testid': 'logout', onclick: () => loginScreen() }, 'Log out'),
        )
      : null,
  );
}

function messageOf(error: unknown): string {
  if (error instanceof ApiError) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

function loginScreen(problem?: string): void {
  show(
    header(),
    h(
      'section',
      { class: 'card', 'data-testid': 'login' },
      h('h2', {}, 'Log in'),
      h(
        'p',
        {},
        `Sign in with your Nostr key through a NIP-07 browser extension (nos2x, Alby). Every call this page makes is signed by the extension (NIP-98); no password, no cookie. Only keys in the service's ${current.list} see data.`,
      ),
      h(
        'button',
        { type: 'button', class: 'primary', 'data-testid': 'login-button', onclick: () => login() },
        'Log in with Nostr extension',
      ),
      problem ? h('p', { class: 'error', 'data-testid': 'error' }, problem) : null,
    ),
  );
}

function notOperatorScreen(pubkey: string, message: string): void {
  show(
    header(),
    h(
      'section',
      { class: 'card refused', 'data-testid': 'not-operator' },
      h('h2', {}, `Not an ${current.role}`),
      h('p', {}, 'This key may not see this dashboard:'),
      h('p', {}, h('code', { 'data-testid': 'refused-pubkey' }, pubkey)),
      h('p', {}, `Ask whoever runs this service to add it to ${current.list}. (${message})`),
      h(
        'button',
        { type: 'button', 'data-testid': 'login-again', onclick: () => loginScreen() },
        'Use another key',
      ),
    ),
  );
}

async function login(): Promise<void> {
  let pubkey: string;
  try {
    pubkey = await loginPubkey();
    await api(pubkey, 'GET', current.whoami);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'FORBIDDEN' && pubkey!) {
      notOperatorScreen(pubkey, messageOf(error));
      return;
    }
    loginScreen(messageOf(error));
    return;
  }
  shell(pubkey, current.pages[0]!);
}

function shell(pubkey: string, page: Page): void {
  const call: Call = (method, path, body) => api(pubkey, method, path, body);
  const content = h('div', { class: 'content', 'data-testid': `page-${page.id}` }, h('p', {}, 'Loading…'));
  const status = h('p', { class: 'status', 'data-testid': 'status' });
  const refresh = () => shell(pubkey, page);
  show(
    header(pubkey),
    h(
      'nav',
      {},
      ...current.pages.map((p) =>
        h(
          'button',
          {
            type: 'button',
            class: p.id === page.id ? 'tab active' : 'tab',
            'data-testid': `nav-${p.id}`,
            onclick: () => shell(pubkey, p),
          },
          p.title,
        ),
      ),
      h('button', { type: 'button', class: 'tab', 'data-testid': 'refresh', onclick: refresh }, 'Refresh'),
      h(
        'button',
        {
          type: 'button',
          class: autoRefresh ? 'tab active' : 'tab',
          'data-testid': 'auto-refresh',
          'aria-pressed': String(autoRefresh),
          title: `Draw this page again every ${AUTO_REFRESH_MS / 1000} s (each time the extension signs its calls)`,
          onclick: () => {
            autoRefresh = !autoRefresh;
            refresh();
          },
        },
        autoRefresh ? `Auto-refresh: on (${AUTO_REFRESH_MS / 1000} s)` : 'Auto-refresh: off',
      ),
    ),
    h('h2', {}, page.title),
    content,
    status,
  );
  page
    .render(call, refresh)
    .then((element) => {
      content.replaceChildren(element);
      status.textContent = `Updated ${new Date().toLocaleTimeString('en-GB')}`;
      if (autoRefresh) refreshTimer = setTimeout(refresh, AUTO_REFRESH_MS);
    })
    .catch((error: unknown) => {
      if (error instanceof ApiError && error.code === 'FORBIDDEN')
        return notOperatorScreen(pubkey, messageOf(error));
      content.replaceChildren(h('p', { class: 'error', 'data-testid': 'error' }, messageOf(error)));
      // A service that is down now may answer next time.
      if (autoRefresh) refreshTimer = setTimeout(refresh, AUTO_REFRESH_MS);
    });
}

loginScreen();
