// The operator dashboard's server side: the page (GET /dashboard), its script and stylesheet,
// bundled from web/ by esbuild on the first request and kept in memory (nothing prebuilt in the
// repository), all under a strict Content-Security-Policy; and the NIP-98 guard that every
// operator JSON route behind the page uses.

export { addOperatorGuard, operatorOf } from './guard';
export { DASHBOARD_CSP, type DashboardApp, registerDashboard } from './serve';
export type { FederationAnswer, MoneyAnswer, RecentRequest } from './wire';
