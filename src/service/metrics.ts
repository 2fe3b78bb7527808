// Prometheus metrics (prom-client), on a registry of our own, and the HTTP endpoint that
// serves them with /healthz. Names follow Prometheus conventions: one symroute_ prefix,
// base units, _total counters; the only high-cardinality-ish label is an interface name.
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BuildInfo } from '../build.js';
import type { ListenAddress } from '../config/config.js';
import type { Trigger } from '../control/observer.js';
import { STAGES, type StageTimes } from '../control/stages.js';
import type { Logger } from './log.js';
import type { ResyncReason } from '../kernel/watcher.js';
import type { FailureReason } from '../domain/reply-paths.js';

// Every label value a counter is known to take, so each series exists at 0 from the start:
// increase() and rate() see the first event instead of the series' sudden appearance.
// The records make the compiler name any value that is added to a type but not here.
const labelValues = <T extends string>(values: Record<T, true>): T[] => Object.keys(values) as T[];
const TRIGGERS = labelValues<Trigger>({ startup: true, event: true, resync: true, reload: true, retry: true, drift: true });
const RESYNC_REASONS = labelValues<Exclude<ResyncReason, 'startup' | 'reload'> | 'dump_interrupted'>({
  enobufs: true,
  decode_error: true,
  read_error: true,
  stale_mirror: true,
  dump_failed: true,
  dump_interrupted: true,
});
const KINDS = ['rule', 'route'] as const;
const FAILURE_REASONS: readonly FailureReason[] = [
  'egress_other_device',
  'egress_prohibited',
  'no_route',
  'ingress_rp_filter',
  'ingress_refused',
  'table_collision',
];
const NETLINK_OPS = [
  'dump_link',
  'dump_address',
  'dump_route',
  'dump_rule',
  'add_rule',
  'delete_rule',
  'add_route',
  'replace_route',
  'delete_route',
] as const;

export class Metrics {
  readonly registry = new Registry();

  readonly convergenceSeconds = new Histogram({
    name: 'symroute_convergence_seconds',
    help: 'Time from reading the kernel event that changed the desired state to the kernel acknowledging the last change it required.',
    // Convergence is usually well under a millisecond; prom-client's defaults start at 5 ms.
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly reconciles = this.counter(
    'symroute_reconciles_total',
    'Reconcile passes, by what triggered them.',
    ['trigger'],
  );
  /** Brings counters kept elsewhere up to date before they are read (set by the observer). */
  beforeRead: () => void = () => undefined;
  readonly netlinkRequests = this.counter(
    'symroute_netlink_requests_total',
    'Netlink requests sent, by operation and result.',
    ['op', 'result'],
    () => this.beforeRead(),
  );
  readonly netlinkErrors = this.counter(
    'symroute_netlink_errors_total',
    'Netlink requests the kernel refused, by operation and errno.',
    ['op', 'errno'],
    () => this.beforeRead(),
  );
  readonly driftRepairs = this.counter(
    'symroute_drift_repairs_total',
    'Rules and routes put back after something else removed or changed them.',
    ['kind'],
  );
  readonly resyncs = this.counter(
    'symroute_resyncs_total',
    'Full or partial re-dumps of kernel state, by reason.',
    ['reason'],
  );
  readonly routesSkipped = this.counter(
    'symroute_routes_skipped_total',
    'Routes read no further than their table and protocol: tables symroute does not use or plan.',
  );
  readonly discardedMessages = this.counter(
    'symroute_netlink_discarded_messages_total',
    'Netlink messages ignored because they were not from the kernel or answered nothing pending.',
  );
  readonly managedInterfaces = this.gauge(
    'symroute_managed_interfaces',
    'Interfaces symroute currently manages.',
  );
  readonly managedRules = this.gauge(
    'symroute_managed_rules',
    'Rules owned by symroute in the kernel.',
    ['family'],
  );
  readonly managedRoutes = this.gauge(
    'symroute_managed_routes',
    'Routes owned by symroute in the kernel.',
    ['family'],
  );
  readonly unusableGateways = this.gauge(
    'symroute_unusable_gateways',
    'Interfaces whose gateway (configured or learned) the kernel would refuse in their table, so they get no default route.',
    ['family'],
  );
  readonly inSync = this.gauge(
    'symroute_in_sync',
    '1 when the kernel matches the desired state, 0 while it is known not to.',
  );
  readonly lastConvergence = this.gauge(
    'symroute_last_convergence_timestamp_seconds',
    'When the kernel last matched the desired state after a change.',
  );
  readonly sysctlProblems = this.gauge(
    'symroute_sysctl_problems',
    'ARP settings of NICs sharing a subnet that break symmetric replies (arp_ignore not 1 or 2, arp_announce not 2).',
  );
  readonly conflicts = this.counter(
    'symroute_conflicts_total',
    'Removals of a symroute rule or route by something else that keeps removing it (10 or more within 10 s); repairs of it then back off.',
    ['kind'],
  );
  readonly conflictsActive = this.gauge(
    'symroute_conflicts',
    'Rules and routes symroute currently puts back with backoff because something else keeps removing them.',
  );
  readonly replyPathOk = this.gauge(
    'symroute_reply_path_ok',
    "1 when every reply path of the NIC and family holds by the kernel's own lookups (symroute verify), 0 when one is broken.",
    ['ifname', 'family'],
  );
  readonly replyPathFailures = this.counter(
    'symroute_reply_path_failures_total',
    'Reply paths found broken (each break once), by reason.',
    ['reason'],
  );
  readonly replyPathVerifyErrors = this.counter(
    'symroute_reply_path_verify_errors_total',
    'Verifications of reply paths that could not be completed (the kernel did not answer a lookup).',
  );
  readonly nameFileErrors = this.counter(
    'symroute_name_file_errors_total',
    'Failed attempts to write the rt_tables.d / rt_protos.d files that name symroute\'s tables for ip(8).',
  );
  readonly sysctlErrors = this.counter(
    'symroute_sysctl_errors_total',
    'Reads or writes of /proc/sys/net/ipv4/conf that failed.',
  );
  readonly configReloads = this.counter(
    'symroute_config_reloads_total',
    'Config reloads (SIGHUP or a change of the watched file), by result.',
    ['result'],
  );
  readonly configLastReloadSuccessful = this.gauge(
    'symroute_config_last_reload_successful',
    '1 if the last config reload succeeded (or none was attempted), 0 if it was rejected.',
  );
  readonly interfaceInSync = this.gauge(
    'symroute_interface_in_sync',
    '1 when the rules and routes of this managed interface match the desired state, 0 while they do not.',
    ['ifname'],
  );
  readonly interfaceTable = this.gauge(
    'symroute_interface_table',
    'The routing table symroute keeps for this managed interface.',
    ['ifname'],
  );
  readonly configLastReloadSuccess = this.gauge(
    'symroute_config_last_reload_success_timestamp_seconds',
    'When the config was last loaded successfully.',
  );

  /** What each stage took since start, read at scrape time (set once the daemon exists). */
  stageTotals: () => StageTimes | undefined = () => undefined;
  readonly stageSeconds: Counter<'stage'> = this.counter(
    'symroute_stage_seconds_total',
    'Time the event loop spent in each stage of following the kernel: receive (reading and decoding notifications), plan, diff, ' +
      "apply (requests until the last ACK, the kernel's work on them included), host (sysctls, table names), report (a pass's log lines and metrics).",
    ['stage'],
    // Read from the daemon's own totals when scraped: no work per pass.
    () => {
      const totals = this.stageTotals();
      this.stageSeconds.reset();
      for (const stage of STAGES) this.stageSeconds.inc({ stage }, totals?.[stage] ?? 0);
    },
  );

  // Every declaration above differs only in name, help and labels; these add the registry. The
  // label names stay literal types (as `as const` made them), so a misspelt label is a type error.
  private counter<const L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], collect?: () => void): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect } : {}) });
  }
  private gauge<const L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  constructor(build: BuildInfo) {
    new Gauge({
      name: 'symroute_build_info',
      help: 'Always 1; the labels say which symroute, built from which commit, runs on which Node.js.',
      labelNames: ['version', 'node_version', 'commit'] as const,
      registers: [this.registry],
    }).set({ version: build.version, node_version: process.versions.node, commit: build.commit }, 1);
    registerRuntimeMetrics(this.registry);
    // Gauges named *_total break Prometheus naming (promtool rejects them); they are only sums
    // of the per-type nodejs_active_{handles,requests,resources} gauges, which stay.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
    this.configLastReloadSuccessful.set(1);
    this.configLastReloadSuccess.set(Date.now() / 1000);
    // Zero series exist from the start, so rate() and alerts work before the first event.
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
    for (const trigger of TRIGGERS) this.reconciles.inc({ trigger }, 0);
    for (const reason of RESYNC_REASONS) this.resyncs.inc({ reason }, 0);
    for (const kind of KINDS) this.driftRepairs.inc({ kind }, 0);
    for (const kind of KINDS) this.conflicts.inc({ kind }, 0);
    for (const reason of FAILURE_REASONS) this.replyPathFailures.inc({ reason }, 0);
    for (const op of NETLINK_OPS) for (const result of ['ok', 'error']) this.netlinkRequests.inc({ op, result }, 0);
    for (const family of ['ipv4', 'ipv6']) {
      this.managedRules.set({ family }, 0);
      this.managedRoutes.set({ family }, 0);
      this.unusableGateways.set({ family }, 0);
    }
  }
}

/**
 * prom-client's Node.js runtime metrics, but none that needs a timer, so an idle daemon sleeps
 * until the kernel or systemd has something for it. prom-client's event-loop collector runs
 * monitorEventLoopDelay at 10 ms resolution, a libuv timer that wakes the main thread 100
 * times a second whether or not anyone scrapes; it is left out, and two figures taken at
 * scrape time stand in for its delay percentiles: the lag until a setImmediate callback runs
 * (prom-client's own nodejs_eventloop_lag_seconds) and the loop's busy time from libuv's idle
 * counter (rate() of it is the event-loop utilisation). Every other collector reads its
 * figure on scrape, or observes GC as it happens.
 */
function registerRuntimeMetrics(registry: Registry): void {
  // collectDefaultMetrics() has no switch for one collector; each is its own module in
  // prom-client's lib/metrics/ (no exports map), taking the registry like it does.
  const require = createRequire(import.meta.url);
  for (const name of collectDefaultMetrics.metricsList) {
    if (name === 'eventLoopLag') continue;
    (require(`prom-client/lib/metrics/${name}`) as (register: Registry) => void)(registry);
  }
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds: how long a setImmediate callback queued at scrape time waited.',
    registers: [registry],
    async collect() {
      const start = process.hrtime.bigint();
      await new Promise((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
  new Counter({
    name: 'nodejs_eventloop_busy_seconds_total',
    help: 'Time the event loop spent running callbacks rather than waiting for events; rate() is the event-loop utilisation.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(performance.eventLoopUtilization().active / 1000);
    },
  });
}

/** What the health endpoints ask the daemon. */
export interface HealthProbes {
  /** Converged at least once and known to be in sync. */
  ready(): boolean;
  /** Why the daemon is not alive (its netlink sockets do not answer), or null. */
  liveness(): Promise<string | null>;
  /** Rules and routes something else keeps removing (described), listed by /healthz. */
  conflicts(): readonly string[];
}

/**
 * Serves GET /metrics, GET /healthz (ready: 200 once the first convergence finished and the
 * kernel is in sync, 503 otherwise) and GET /livez (200 while the event loop and both netlink
 * sockets answer, 503 naming the dead socket; no answer at all when the loop is stuck).
 * A failure to listen is logged, not fatal.
 */
export class MetricsServer {
  private server: Server | null = null;

  constructor(
    private readonly metrics: Metrics,
    private readonly probes: HealthProbes,
    private readonly log: Logger,
  ) {}

  async listen(address: ListenAddress | false): Promise<void> {
    await this.close();
    if (!address) return;
    const server = createServer((request, response) => {
      const path = (request.url ?? '').split('?')[0];
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => response.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
          (error: Error) => response.writeHead(500).end(`${error.message}\n`),
        );
      } else if (path === '/healthz') {
        const ok = this.probes.ready();
        // Objects someone else keeps removing: named, so an operator sees the fight from here.
        const conflicts = this.probes.conflicts().map((c) => `conflict: ${c} keeps being removed by something else\n`);
        response.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end((ok ? 'ok\n' : 'not in sync\n') + conflicts.join(''));
      } else if (path === '/livez') {
        this.probes.liveness().then((problem) => {
          if (problem) this.log.error(`liveness probe failed: ${problem}`);
          response.writeHead(problem ? 503 : 200, { 'content-type': 'text/plain' }).end(problem ? `${problem}\n` : 'alive\n');
        });
      } else {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics, /healthz or /livez\n');
      }
    });
    await new Promise<void>((resolve) => {
      server.once('error', (error) => {
        this.log.error({ err: error }, `cannot serve metrics on ${format(address)}: ${error.message}`);
        resolve();
      });
      server.listen(address.port, address.host, () => {
        this.server = server;
        this.log.info(`serving metrics on http://${format(address)}/metrics`);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}

export const format = (address: ListenAddress): string =>
  address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
