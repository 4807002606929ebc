// Static checks of the deployment files (no Docker): the Kubernetes manifests, the compose stack,
// the Dockerfiles, Prometheus (promtool when it is installed) and alert rules, the Grafana
// provisioning and dashboards, and the OpenTelemetry collector configuration.
// `pnpm test:containers` (tools/containers/src/run.ts) builds and runs the images for real.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { generateStackEnv } from '../src/stack-env';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const infra = join(root, 'infra');
const read = (path: string) => readFileSync(join(infra, path), 'utf8');
const run = promisify(execFile);

/** The services that get an image, a Deployment and a compose service each. */
const SERVICES = ['router', 'node', 'settlement', 'relay', 'wallet-fleet', 'lightning-devnet'] as const;

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML, checked field by field.
type Doc = any;

function k8sDocs(): { file: string; doc: Doc }[] {
  const out: { file: string; doc: Doc }[] = [];
  for (const file of readdirSync(join(infra, 'k8s')).sort()) {
    if (!file.endsWith('.yaml')) continue;
    for (const parsed of parseAllDocuments(read(`k8s/${file}`))) {
      assert.deepEqual(parsed.errors, [], `${file}: ${parsed.errors.join('; ')}`);
      const doc = parsed.toJS();
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

/** Every fed-ai metric name the services and packages export (from their sources). */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  for (const { text } of sourceFiles())
    for (const m of text.matchAll(/name:\s*'((?:fedai|wallet_fleet)_[a-z0-9_]+)'/g)) names.add(m[1]!);
  // wallet-fleet's countGauge(name, …) helper.
  for (const m of readFileSync(join(root, 'services/wallet-fleet/src/metrics.ts'), 'utf8').matchAll(
    /countGauge\(\s*'([a-z0-9_]+)'/g,
  ))
    names.add(m[1]!);
  return names;
}

/** Each `.ts` file under the services' and packages' `src` folders, with its text. */
function sourceFiles(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (name === 'node_modules' || name === 'test') continue;
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.ts'))
        out.push({ path: full.slice(root.length + 1), text: readFileSync(full, 'utf8') });
    }
  };
  for (const top of ['services', 'packages'])
    for (const pkg of readdirSync(join(root, top))) {
      const src = join(root, top, pkg, 'src');
      if (existsSync(src)) walk(src);
    }
  return out;
}

/**
 * The job heartbeat metrics (kit's job-heartbeat.ts) with their label names, and the services
 * that export them: those whose sources make a `JobHeartbeats` and register it on a registry.
 */
function jobMetrics(): { labels: Map<string, string[]>; services: Set<string> } {
  const kit = readFileSync(join(root, 'packages/kit/src/job-heartbeat.ts'), 'utf8');
  const labels = new Map<string, string[]>();
  for (const m of kit.matchAll(/name:\s*'(fedai_job_[a-z0-9_]+)'[^}]*?labelNames:\s*\[([^\]]*)\]/g))
    labels.set(
      m[1]!,
      [...m[2]!.matchAll(/'([a-z_]+)'/g)].map((l) => l[1]!),
    );
  const services = new Set<string>();
  for (const { path, text } of sourceFiles()) {
    if (!path.startsWith('services/')) continue;
    for (const m of text.matchAll(/\b(\w+)\s*=\s*new JobHeartbeats\(/g))
      if (new RegExp(`\\b${m[1]}\\.register\\(`).test(text)) services.add(path.split('/')[1]!);
  }
  return { labels, services };
}

/** Job names the services give `jobs.job(name, …)` in their sources. */
function jobNames(): Set<string> {
  const names = new Set<string>();
  for (const { text } of sourceFiles())
    for (const m of text.matchAll(/\.job\(\s*'([a-z0-9_]+)'/g)) names.add(m[1]!);
  return names;
}

/** Labels a PromQL expression names: in selectors `{a="…"}` and in `by (…)` / `without (…)`. */
function labelsIn(expr: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/\{([^}]*)\}/g))
    for (const l of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) out.push(l[1]!);
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g))
    out.push(
      ...m[1]!
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    );
  return out;
}

/** Every panel of a dashboard, rows' nested panels (collapsed rows) included. */
function allPanels(dashboard: Doc): Doc[] {
  return dashboard.panels.flatMap((p: Doc) => (p.type === 'row' ? [p, ...(p.panels ?? [])] : [p]));
}

/** fed-ai metric names a PromQL expression uses (histogram suffixes stripped). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(?:fedai|wallet_fleet)_[a-z0-9_]+/g)].map((m) =>
    m[0].replace(/_(bucket|sum|count)$/, ''),
  );
}

test('every Kubernetes manifest parses and the kustomization lists every file', () => {
  const files = readdirSync(join(infra, 'k8s')).filter((f) => f.endsWith('.yaml'));
  const docs = k8sDocs();
  assert.ok(docs.length >= 20, `only ${docs.length} documents`);
  for (const { file, doc } of docs) {
    assert.equal(typeof doc.apiVersion, 'string', `${file}: apiVersion`);
    assert.equal(typeof doc.kind, 'string', `${file}: kind`);
    if (doc.kind !== 'Kustomization')
      assert.equal(typeof doc.metadata?.name, 'string', `${file}: metadata.name`);
  }
  const kustomization = parse(read('k8s/kustomization.yaml'));
  assert.deepEqual(
    [...kustomization.resources].sort(),
    files.filter((f) => f !== 'kustomization.yaml').sort(),
  );
});

test('each service is a Deployment with probes, resource limits, a non-root user and a Service', () => {
  const docs = k8sDocs().map((d) => d.doc);
  const kinds = new Set(docs.map((d) => d.kind));
  for (const kind of ['Deployment', 'Service', 'ConfigMap', 'Secret', 'PodDisruptionBudget', 'StatefulSet'])
    assert.ok(kinds.has(kind), `no ${kind}`);
  for (const service of SERVICES) {
    const name = `fedai-${service}`;
    const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name);
    assert.ok(deployment, `no Deployment ${name}`);
    const pod = deployment.spec.template;
    assert.deepEqual(deployment.spec.selector.matchLabels, { 'app.kubernetes.io/name': name });
    assert.equal(pod.metadata.labels['app.kubernetes.io/name'], name);
    assert.equal(pod.spec.securityContext.runAsNonRoot, true, `${name}: runAsNonRoot`);
    for (const c of pod.spec.containers) {
      assert.equal(c.image, `fedai/${service}:0.1.0`);
      assert.ok(c.livenessProbe?.httpGet?.path, `${name}: livenessProbe`);
      assert.ok(c.readinessProbe?.httpGet?.path, `${name}: readinessProbe`);
      assert.ok(c.resources?.limits?.cpu && c.resources?.limits?.memory, `${name}: resource limits`);
      assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${name}: resource requests`);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}: allowPrivilegeEscalation`);
      const port = c.ports[0].containerPort;
      assert.equal(c.livenessProbe.httpGet.port, port, `${name}: probe port`);
    }
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === name);
    assert.ok(svc, `no Service ${name}`);
    assert.deepEqual(svc.spec.selector, { 'app.kubernetes.io/name': name });
  }
});

test('routers and nodes scale horizontally with their state in PostgreSQL', () => {
  const docs = k8sDocs().map((d) => d.doc);
  const byKind = (kind: string) => docs.filter((d) => d.kind === kind);
  for (const name of ['fedai-router', 'fedai-node']) {
    const deployment = byKind('Deployment').find((d) => d.metadata.name === name);
    assert.ok(deployment.spec.replicas >= 2, `${name}: replicas`);
    const hpa = byKind('HorizontalPodAutoscaler').find((d) => d.spec.scaleTargetRef.name === name);
    assert.ok(hpa && hpa.spec.maxReplicas > hpa.spec.minReplicas, `${name}: HorizontalPodAutoscaler`);
  }
  for (const name of ['fedai-router', 'fedai-node', 'fedai-settlement', 'fedai-wallet-fleet']) {
    const pdb = byKind('PodDisruptionBudget').find(
      (d) => d.spec.selector.matchLabels['app.kubernetes.io/name'] === name,
    );
    assert.ok(pdb, `${name}: PodDisruptionBudget`);
  }
  // Everything a router, settlement or the wallet fleet keeps is in PostgreSQL (DATABASE_URL); the
  // pod's /data is an emptyDir. A node keeps no shared state (its key and metering log are its own).
  for (const name of ['fedai-router', 'fedai-settlement', 'fedai-wallet-fleet', 'fedai-lightning-devnet']) {
    const pod = byKind('Deployment').find((d) => d.metadata.name === name).spec.template.spec;
    const url = pod.containers[0].env.find((e: Doc) => e.name === 'DATABASE_URL');
    assert.match(
      url?.value ?? '',
      /^postgres:\/\/.*@\$\(POSTGRES_HOST\):5432\/\w+$/,
      `${name}: DATABASE_URL`,
    );
    assert.ok(
      pod.volumes.every((v: Doc) => v.emptyDir),
      `${name}: only emptyDir volumes`,
    );
  }
  const postgres = byKind('StatefulSet').find((d) => d.metadata.name === 'fedai-postgres');
  assert.ok(postgres?.spec.volumeClaimTemplates?.length, 'PostgreSQL keeps a volume claim');
  // PostgreSQL creates every database a service's DATABASE_URL names.
  const databases = String(
    postgres.spec.template.spec.containers[0].env.find((e: Doc) => e.name === 'POSTGRES_DATABASES')?.value,
  ).split(',');
  for (const d of byKind('Deployment'))
    for (const e of d.spec.template.spec.containers[0].env)
      if (e.name === 'DATABASE_URL')
        assert.ok(databases.includes(e.value.split('/').at(-1)), `${d.metadata.name}: database not created`);
  // Every secret a manifest reads is a key of the Secret.
  const secret = byKind('Secret').find((d) => d.metadata.name === 'fedai-secrets');
  const config = byKind('ConfigMap').find((d) => d.metadata.name === 'fedai-config');
  for (const d of byKind('Deployment'))
    for (const e of d.spec.template.spec.containers[0].env) {
      const s = e.valueFrom?.secretKeyRef;
      if (s) assert.ok(s.key in secret.stringData, `${d.metadata.name}: secret ${s.key}`);
      const c = e.valueFrom?.configMapKeyRef;
      if (c) assert.ok(c.key in config.data, `${d.metadata.name}: config ${c.key}`);
    }
});

test('the compose stack: every service, host networking, healthchecks, variables from containers:env', () => {
  const text = read('docker-compose.yml');
  const compose = parse(text, { merge: true });
  const services = compose.services as Record<string, Doc>;
  const expected = [
    'postgres',
    'relay',
    'lightning-devnet',
    'settlement',
    'router',
    'node-demo',
    'wallet-fleet',
    'prometheus',
    'grafana',
    'otel-collector',
  ];
  for (const name of expected) assert.ok(services[name], `compose: no service ${name}`);
  for (const [name, s] of Object.entries(services)) {
    assert.equal(s.network_mode, 'host', `${name}: network_mode host`);
    if (s.restart === 'no') {
      // One-shot jobs: something waits for them to finish instead of for their health.
      assert.ok(
        Object.values(services).some(
          (o: Doc) => o.depends_on?.[name]?.condition === 'service_completed_successfully',
        ),
        `${name}: one-shot job nobody waits for`,
      );
      continue;
    }
    assert.ok(Array.isArray(s.healthcheck?.test) && s.healthcheck.test.length > 1, `${name}: healthcheck`);
  }
  for (const service of SERVICES) {
    const entry = Object.values(services).find((s: Doc) => s.image === `fedai/${service}:0.1.0` && s.build);
    assert.ok(entry, `compose builds fedai/${service}`);
    assert.equal(entry.build.dockerfile, 'infra/Dockerfile');
    assert.equal(entry.build.args.SERVICE, service);
    assert.match(entry.build.args.BASE_IMAGE, /^\$\{BASE_IMAGE:-node:20-bookworm-slim\}$/);
  }
  const databases = String(services.postgres.environment.POSTGRES_DATABASES).split(',');
  for (const [name, s] of Object.entries(services)) {
    const url = (s as Doc).environment?.DATABASE_URL;
    if (url) assert.ok(databases.includes(url.split('/').at(-1)), `${name}: database not created`);
  }
  // Every variable without a default comes from `pnpm containers:env`.
  const env = generateStackEnv();
  for (const m of text.matchAll(/\$\{([A-Z_]+)(:[-?][^}]*)?\}/g)) {
    const [, name, fallback] = m;
    if (fallback?.startsWith(':-')) continue;
    assert.ok(name! in env, `compose uses \${${name}} that containers:env does not write`);
  }
  // Files the stack mounts exist.
  for (const s of Object.values(services))
    for (const v of (s as Doc).volumes ?? []) {
      const source = String(v).split(':')[0]!;
      if (source.startsWith('./')) assert.ok(existsSync(join(infra, source)), `compose mounts ${source}`);
    }
});

test('the Dockerfiles: base image argument, non-root user, healthcheck, pinned versions', () => {
  const main = readFileSync(join(infra, 'Dockerfile'), 'utf8');
  assert.match(main, /^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
  assert.equal(main.match(/^FROM /gm)?.length, 2, 'multi-stage: build and runtime');
  assert.match(main, /--frozen-lockfile/);
  assert.match(main, /^ARG PNPM_VERSION=\d+\.\d+\.\d+$/m);
  for (const file of ['Dockerfile', 'postgres/Dockerfile', 'prometheus/Dockerfile']) {
    const text = readFileSync(join(infra, file), 'utf8');
    const user = text.match(/^USER (\S+)$/gm)?.at(-1);
    assert.ok(user && !/USER (root|0)(:|$)/.test(user), `${file}: runs as ${user}`);
    assert.match(text, /^HEALTHCHECK /m, `${file}: HEALTHCHECK`);
  }
  assert.match(read('postgres/Dockerfile'), /^ARG PG_VERSION=\d+\.\d+-\S+$/m);
  // PostgreSQL is PID 1 and stops fast: a smart shutdown outwaits `docker stop` and the SIGKILL
  // leaves a postmaster.pid that can block the next start.
  assert.match(read('postgres/Dockerfile'), /^STOPSIGNAL SIGINT$/m);
  assert.match(read('postgres/entrypoint.sh'), /^exec postgres /m);
  assert.match(read('prometheus/Dockerfile'), /^ARG PROMETHEUS_VERSION=\d+\.\d+\.\d+\S*$/m);
  const healthcheck = read('docker/healthcheck.mjs');
  for (const service of SERVICES)
    assert.ok(healthcheck.includes(`${service.includes('-') ? `'${service}'` : service}:`));
});

test('Prometheus: scrape config and alert rules (promtool when installed), metrics that exist', async () => {
  const config = parse(read('prometheus/prometheus.yml'));
  const jobs = config.scrape_configs.map((j: Doc) => j.job_name);
  for (const job of ['fedai-router', 'fedai-node', 'fedai-settlement', 'fedai-wallet-fleet'])
    assert.ok(jobs.includes(job), `scrape job ${job}`);
  assert.deepEqual(config.rule_files, ['alerts.yml']);
  const rules = parse(read('prometheus/alerts.yml'));
  const alerts = rules.groups.flatMap((g: Doc) => g.rules) as Doc[];
  const names = alerts.map((r) => r.alert);
  for (const required of [
    'FedaiReconcileMismatch',
    'FedaiWalletPaymentFailures',
    'FedaiSettlementDown',
    'FedaiBreakerStorm',
    'FedaiApprovalBacklog',
  ])
    assert.ok(names.includes(required), `alert ${required}`);
  const exported = exportedMetrics();
  assert.ok(exported.has('fedai_node_requests_total'), 'metric scan found the node metrics');
  for (const rule of alerts) {
    assert.equal(typeof rule.expr, 'string', `${rule.alert}: expr`);
    assert.ok(rule.labels?.severity, `${rule.alert}: severity`);
    for (const metric of metricsIn(rule.expr))
      assert.ok(exported.has(metric), `${rule.alert}: ${metric} is not exported`);
  }
  const promtool = (process.env.PATH ?? '')
    .split(delimiter)
    .map((dir) => join(dir, 'promtool'))
    .find((p) => existsSync(p));
  if (!promtool) return; // CI installs Debian's prometheus (.ci/run); without it the checks above stand.
  const checked = await run(promtool, ['check', 'config', join(infra, 'prometheus/prometheus.yml')]);
  assert.match(checked.stdout, /SUCCESS/);
  const checkedRules = await run(promtool, ['check', 'rules', join(infra, 'prometheus/alerts.yml')]);
  assert.match(checkedRules.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
});

test('Grafana: provisioned datasource and dashboards, panels on that datasource with exported metrics', () => {
  const datasources = parse(read('grafana/provisioning/datasources/prometheus.yaml'));
  const uid = datasources.datasources[0].uid;
  assert.equal(datasources.datasources[0].type, 'prometheus');
  const providers = parse(read('grafana/provisioning/dashboards/fedai.yaml'));
  const compose = parse(read('docker-compose.yml'), { merge: true });
  const mounts = compose.services.grafana.volumes.map((v: string) => v.split(':'));
  const dashboardsMount = mounts.find((m: string[]) => m[0] === './grafana/dashboards');
  assert.equal(providers.providers[0].options.path, dashboardsMount?.[1]);
  const exported = exportedMetrics();
  const files = readdirSync(join(infra, 'grafana/dashboards')).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 2);
  const uids = new Set<string>();
  for (const file of files) {
    const dashboard = JSON.parse(read(`grafana/dashboards/${file}`));
    assert.ok(dashboard.uid && !uids.has(dashboard.uid), `${file}: unique uid`);
    uids.add(dashboard.uid);
    assert.ok(dashboard.panels.length > 0, `${file}: panels`);
    const ids = allPanels(dashboard).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `${file}: unique panel ids`);
    for (const panel of allPanels(dashboard)) {
      if (panel.type === 'row') {
        assert.ok(panel.title, `${file}: a row without a title`);
        continue;
      }
      assert.equal(panel.datasource.uid, uid, `${file} ${panel.title}: datasource`);
      assert.ok(panel.targets.length > 0, `${file} ${panel.title}: targets`);
      for (const target of panel.targets) {
        assert.equal(target.datasource.uid, uid);
        for (const metric of metricsIn(target.expr))
          assert.ok(exported.has(metric), `${file} ${panel.title}: ${metric} is not exported`);
      }
    }
  }
});

test('Grafana: the background-job panels read metrics the services export, with their labels', () => {
  const { labels, services } = jobMetrics();
  assert.deepEqual(
    [...labels.keys()].sort(),
    [
      'fedai_job_last_duration_seconds',
      'fedai_job_last_success_timestamp_seconds',
      'fedai_job_overdue',
      'fedai_job_runs_total',
    ],
    'the scan found every job metric kit defines',
  );
  // Every service with background jobs registers them on its /metrics registry.
  for (const service of ['router', 'node', 'settlement', 'wallet-fleet'])
    assert.ok(services.has(service), `${service} exports the job metrics`);
  // Labels every scraped series has: `service` (each registry's default) and Prometheus' own.
  const everywhere = ['service', 'instance', 'job'];
  const used = new Set<string>();
  for (const file of readdirSync(join(infra, 'grafana/dashboards')).filter((f) => f.endsWith('.json'))) {
    const dashboard = JSON.parse(read(`grafana/dashboards/${file}`));
    for (const panel of allPanels(dashboard))
      for (const target of panel.targets ?? []) {
        const named = [...target.expr.matchAll(/\bfedai_job_[a-z0-9_]+/g)].map((m: RegExpMatchArray) => m[0]);
        if (named.length === 0) continue;
        const allowed = new Set([...everywhere, ...named.flatMap((m: string) => labels.get(m) ?? [])]);
        for (const metric of named) {
          assert.ok(labels.has(metric), `${file} ${panel.title}: ${metric} is not a job metric kit exports`);
          used.add(metric);
        }
        for (const label of labelsIn(target.expr))
          assert.ok(
            allowed.has(label),
            `${file} ${panel.title}: label ${label} is not on ${named.join(', ')}`,
          );
        for (const m of String(target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g))
          assert.ok(
            allowed.has(m[1]!),
            `${file} ${panel.title}: legend label ${m[1]} is not on ${named.join(', ')}`,
          );
      }
  }
  // The job panels show how long since each job's last success, its timeouts and its overdue flag.
  for (const metric of [
    'fedai_job_last_success_timestamp_seconds',
    'fedai_job_runs_total',
    'fedai_job_overdue',
  ])
    assert.ok(used.has(metric), `no dashboard panel shows ${metric}`);
});

test('the job-stopped runbook lists every background job the services run', () => {
  const runbook = readFileSync(join(root, 'docs/runbooks/job-stopped.md'), 'utf8');
  const names = jobNames();
  for (const job of ['router_health_probes', 'node_registration', 'settlement_sweeper'])
    assert.ok(names.has(job), `the job scan found ${job}`);
  for (const job of names)
    assert.ok(runbook.includes(`\`${job}\``), `docs/runbooks/job-stopped.md: ${job} missing`);
});

test('OpenTelemetry collector: every pipeline component is defined, all on 127.0.0.1', () => {
  const text = read('otel/collector.yaml');
  const config = parse(text);
  for (const [name, pipeline] of Object.entries(config.service.pipelines as Record<string, Doc>)) {
    for (const section of ['receivers', 'processors', 'exporters'] as const)
      for (const component of pipeline[section] ?? [])
        assert.ok(component in config[section], `${name}: ${section} ${component} not defined`);
  }
  for (const extension of config.service.extensions) assert.ok(extension in config.extensions);
  for (const m of text.matchAll(/endpoint:\s*(\S+)/g)) assert.match(m[1]!, /^127\.0\.0\.1:\d+$/);
});
