// `symroute run` as a service: the metrics endpoint (judged by promtool and `ip -json`),
// SIGHUP reloads (diffs, rejections, storms), systemd's notify protocol against a real
// AF_UNIX datagram listener, journald-style log priorities, and running with CAP_NET_ADMIN
// as the only privilege. Addresses: 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24 and
// 2001:db8::/32, inside namespaces each test makes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO, type DaemonProcess, type IpRoute, type IpRule } from '../support/lab.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const LISTENER = join(REPO, 'test/support/notify-listener.py');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const METRICS = 'http://127.0.0.1:9477';

// ---------------------------------------------------------------------------------------
// Processes a test starts itself (listeners, squatters, hand-spawned daemons): killed in
// afterEach, before the lab (and its namespaces) goes.

const processes: ChildProcess[] = [];

function track<T extends ChildProcess>(child: T): T {
  processes.push(child);
  return child;
}

async function killAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }),
  );
}

let lab: Lab | undefined;

afterEach(async () => {
  try {
    await killAll(processes.splice(0));
  } finally {
    await lab?.cleanup();
    lab = undefined;
  }
});

/** Lines written to a child's stdout so far (complete lines only). */
function collectLines(child: ChildProcess): string[] {
  const lines: string[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  return lines;
}

// ---------------------------------------------------------------------------------------
// Topology: one host namespace with `count` NICs b0..b{count-1}, each a veth whose peer
// p{k} sits in a second namespace. b{k} has 198.18.{k+1}.10/24 (and 2001:db8:{k+1}::10/64).

interface Host {
  ns: string;
  peerNs: string;
  nics: string[];
  v4: string[];
  v6: string[];
}

async function multiNicHost(l: Lab, count: number, options: { ipv6?: boolean } = {}): Promise<Host> {
  const ns = await l.namespace('h');
  const peerNs = await l.namespace('p');
  const host: Host = { ns, peerNs, nics: [], v4: [], v6: [] };
  for (let k = 0; k < count; k++) {
    const nic = `b${k}`;
    await l.veth(ns, nic, peerNs, `p${k}`);
    await l.ip(ns, 'addr', 'add', `198.18.${k + 1}.10/24`, 'dev', nic);
    await l.ip(peerNs, 'addr', 'add', `198.18.${k + 1}.1/24`, 'dev', `p${k}`);
    host.nics.push(nic);
    host.v4.push(`198.18.${k + 1}.10`);
    if (options.ipv6) {
      await l.ip(ns, 'addr', 'add', `2001:db8:${k + 1}::10/64`, 'dev', nic, 'nodad');
      host.v6.push(`2001:db8:${k + 1}::10`);
    }
  }
  return host;
}

/** The table symroute uses for a NIC: table.base (1000) + ifindex, as nothing is pinned. */
async function tableOf(l: Lab, ns: string, nic: string): Promise<number> {
  const [link] = await l.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', nic);
  return 1000 + link!.ifindex;
}

const ruleLine = (r: Pick<IpRule, 'src' | 'table' | 'priority'>) => `from ${r.src} lookup ${r.table} pref ${r.priority}`;

/** symroute's rules (protocol 83) as sorted `from <src> lookup <table> pref <n>` lines. */
async function ownedRuleLines(l: Lab, ns: string, family: 4 | 6 = 4): Promise<string[]> {
  return (await l.ownedRules(ns, family)).map(ruleLine).sort();
}

/** Every route of a family with protocol 83, in any table. */
async function ownedRoutes(l: Lab, ns: string, family: 4 | 6): Promise<IpRoute[]> {
  const routes = await l.ipJsonNumeric<IpRoute>(ns, `-${family}`, 'route', 'show', 'table', 'all');
  return routes.filter((r) => r.protocol === '83');
}

/** Rules and IPv4 routes of every table, as text, to compare before and after. */
async function ipv4RulesAndRoutes(l: Lab, ns: string): Promise<string> {
  const parts = await Promise.all([
    l.ip(ns, '-N', '-json', '-4', 'rule', 'show'),
    l.ip(ns, '-N', '-json', '-4', 'route', 'show', 'table', 'all'),
  ]);
  return parts.join('\n');
}

/** Starts the daemon and waits for its first convergence (`running: …` is logged after it). */
async function startRunning(
  l: Lab,
  ns: string,
  yaml: string,
  env: Record<string, string | undefined> = {},
): Promise<{ daemon: DaemonProcess; config: string }> {
  const config = l.writeConfig(yaml);
  const daemon = l.startDaemon(ns, ['--config', config], env);
  await eventually(() => expect(daemon.messages()).toContainEqual(expect.stringMatching(/^running: /)));
  return { daemon, config };
}

const alive = (daemon: DaemonProcess) => daemon.child.exitCode === null && daemon.child.signalCode === null;

/** Log records written after the first `from` lines. */
function recordsSince(daemon: DaemonProcess, from: number) {
  return daemon.lines
    .slice(from)
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string; level: number });
}

const CHANGE = /^(added|deleted|replaced with) (rule|route) /;

// ---------------------------------------------------------------------------------------
// Metrics helpers

async function scrape(l: Lab, ns: string): Promise<string> {
  return l.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', `${METRICS}/metrics`);
}

/** The value of one exact series (`name{label="v",...}` as prom-client writes it). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** GET over HTTP from inside `ns`: status code and body. */
async function httpGet(l: Lab, ns: string, path: string): Promise<{ status: number; body: string }> {
  const out = await l.exec(ns, 'curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', `${METRICS}${path}`);
  const cut = out.lastIndexOf('\n');
  return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) };
}

/** A bare TCP connect from inside `ns`: 'connected', or the error code (ECONNREFUSED, ...). */
async function tcpConnect(l: Lab, ns: string, port: number): Promise<string> {
  const script =
    `const s = require('node:net').connect(${port}, '127.0.0.1');` +
    `s.on('connect', () => { console.log('connected'); s.destroy(); });` +
    `s.on('error', (e) => console.log(e.code));`;
  return (await l.exec(ns, process.execPath, '-e', script)).trim();
}

/** Runs `promtool check metrics` on `text`. */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new Error('promtool is not installed (not on PATH): install it, e.g. `apt-get install prometheus` on Debian')
          : error,
      ),
    );
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.on('error', () => undefined); // promtool missing: reported by 'error' above
    child.stdin.end(text);
  });
}

/** Every metric src/service/metrics.ts defines, with the `# TYPE` it must be exposed under. */
function definedMetrics(): Array<{ name: string; type: string }> {
  const source = readFileSync(join(REPO, 'src/service/metrics.ts'), 'utf8');
  // Declared as `new Counter({ name: '…'` or through the class's helpers, `this.counter('…'`.
  const found = [...source.matchAll(/(?:new (Histogram|Counter|Gauge)\(\{\s*name: |this\.(counter|gauge)\(\s*)'([a-zA-Z_:][a-zA-Z0-9_:]*)'/g)];
  return found.map(([, kind, helper, name]) => ({ name: name!, type: (kind ?? helper)!.toLowerCase() }));
}

// ---------------------------------------------------------------------------------------
// systemd notify listener (test/support/notify-listener.py)

interface Notification {
  data: string;
  pid: number | null;
  monotonic_usec: number;
  stopped_sender: boolean;
}

class NotifyListener {
  readonly notifications: Notification[] = [];
  private listening = false;
  private stderr = '';

  private constructor(
    readonly child: ChildProcess,
    readonly address: string,
    private readonly ns: string | undefined,
  ) {
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop()!;
      for (const part of parts) {
        const record = JSON.parse(part) as Notification | { listening: string };
        if ('listening' in record) this.listening = true;
        else this.notifications.push(record);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  /** Binds `address` (a path, or `@name`: abstract, so in `ns`) and waits until it is bound. */
  static async start(address: string, options: { ns?: string; stopSenderOn?: string } = {}): Promise<NotifyListener> {
    const args = [LISTENER, address, ...(options.stopSenderOn ? ['--stop-sender-on', options.stopSenderOn] : [])];
    const child = track(
      options.ns
        ? spawn('ip', ['netns', 'exec', options.ns, 'python3', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('python3', args, { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const listener = new NotifyListener(child, address, options.ns);
    await eventually(() => {
      if (child.exitCode !== null) throw new Error(`notify listener exited ${child.exitCode}: ${listener.stderr}`);
      expect(listener.listening).toBe(true);
    });
    return listener;
  }

  /** Waits for the first notification at or after `from` that `match` accepts; returns its index. */
  async next(match: (n: Notification) => boolean, from = 0, timeoutMs?: number): Promise<number> {
    return eventually(() => {
      const index = this.notifications.findIndex((n, i) => i >= from && match(n));
      if (index < 0) throw new Error(`no such notification yet; got:\n${this.dump()}`);
      return index;
    }, timeoutMs);
  }

  /**
   * Sends `text` to the listener's own socket and waits for it: everything sent before this
   * call has then been read too (one socket, one queue, in order).
   */
  async flush(): Promise<void> {
    const text = `X_TEST_SENTINEL=${Date.now()}`;
    const command = ['python3', LISTENER, '--send', this.address, text];
    await (this.ns ? run('ip', ['netns', 'exec', this.ns, ...command]) : run(command[0]!, command.slice(1)));
    await this.next((n) => n.data === text);
  }

  count(match: (n: Notification) => boolean, from = 0, to = this.notifications.length): number {
    return this.notifications.slice(from, to).filter(match).length;
  }

  dump(): string {
    return this.notifications.map((n, i) => `${i}: ${JSON.stringify(n.data)}`).join('\n');
  }
}

const has = (line: string) => (n: Notification) => n.data.split('\n').includes(line);
const field = (n: Notification, key: string) =>
  n.data.split('\n').find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);

/** Un-freezes a daemon the listener stopped with --stop-sender-on. */
function resume(daemon: DaemonProcess): void {
  process.kill(daemon.child.pid!, 'SIGCONT');
}

// ---------------------------------------------------------------------------------------

describe('metrics endpoint', () => {
  it('serves a scrape that passes promtool, has every metric with its type, and matches the kernel', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3, { ipv6: true });
    await startRunning(lab, host.ns, '');
    const l = lab;

    // Gauges are set when a pass finds the kernel in sync; the first one may still be running.
    const text = await eventually(async () => {
      const scraped = await scrape(l, host.ns);
      expect(sample(scraped, 'symroute_in_sync')).toBe(1);
      expect(sample(scraped, 'symroute_managed_rules{family="ipv4"}')).toBe(3);
      expect(sample(scraped, 'symroute_managed_rules{family="ipv6"}')).toBe(3);
      return scraped;
    });

    const lint = await promtoolCheck(text);
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);

    const metrics = definedMetrics();
    expect(metrics.length).toBeGreaterThanOrEqual(16); // the regex still understands metrics.ts
    for (const { name, type } of metrics) expect(text).toContain(`\n# TYPE ${name} ${type}\n`);

    expect(text).toMatch(/^symroute_in_sync 1$/m);
    const { commit } = JSON.parse(readFileSync(join(REPO, 'dist/build-info.json'), 'utf8')) as { commit: string };
    expect(commit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    expect(text).toContain(
      `\nsymroute_build_info{version="${VERSION}",node_version="${process.versions.node}",commit="${commit}"} 1\n`,
    );
    // Per interface: in sync, and which table it has.
    for (const nic of host.nics) {
      expect(sample(text, `symroute_interface_in_sync{ifname="${nic}"}`), nic).toBe(1);
      expect(sample(text, `symroute_interface_table{ifname="${nic}"}`), nic).toBe(await tableOf(lab, host.ns, nic));
    }
    // Every known label value of every counter is there at 0 before its first event, so an
    // increase() alert sees that first event.
    for (const series of [
      'symroute_reconciles_total{trigger="drift"}',
      'symroute_reconciles_total{trigger="reload"}',
      'symroute_resyncs_total{reason="enobufs"}',
      'symroute_resyncs_total{reason="dump_interrupted"}',
      'symroute_drift_repairs_total{kind="rule"}',
      'symroute_drift_repairs_total{kind="route"}',
      'symroute_netlink_requests_total{op="delete_route",result="error"}',
      'symroute_netlink_requests_total{op="add_rule",result="error"}',
    ]) {
      expect(sample(text, series), series).toBe(0);
    }
    expect(sample(text, 'symroute_managed_rules{family="ipv4"}')).toBe((await lab.ownedRules(host.ns, 4)).length);
    expect(sample(text, 'symroute_managed_rules{family="ipv6"}')).toBe((await lab.ownedRules(host.ns, 6)).length);
    expect(sample(text, 'symroute_managed_routes{family="ipv4"}')).toBe((await ownedRoutes(lab, host.ns, 4)).length);
    expect(sample(text, 'symroute_managed_routes{family="ipv6"}')).toBe((await ownedRoutes(lab, host.ns, 6)).length);
    expect(sample(text, 'symroute_managed_interfaces')).toBe(3);

    // Convergence is sub-millisecond territory: the histogram must be able to say so.
    for (const le of ['0.0001', '0.00025', '0.0005', '0.001']) {
      expect(sample(text, `symroute_convergence_seconds_bucket{le="${le}"}`), `bucket le=${le}`).toBeTypeOf('number');
    }
    expect(sample(text, 'symroute_convergence_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'symroute_config_reloads_total{result="success"}')).toBe(0);
    expect(sample(text, 'symroute_config_reloads_total{result="failure"}')).toBe(0);
    expect(sample(text, 'symroute_config_last_reload_successful')).toBe(1);

    // An interface that is no longer managed loses its series.
    await lab.ip(host.ns, 'link', 'set', host.nics[2]!, 'down');
    await eventually(async () => {
      const scraped = await scrape(l, host.ns);
      expect(sample(scraped, `symroute_interface_in_sync{ifname="${host.nics[2]}"}`)).toBeUndefined();
      expect(sample(scraped, `symroute_interface_table{ifname="${host.nics[2]}"}`)).toBeUndefined();
      expect(sample(scraped, `symroute_interface_in_sync{ifname="${host.nics[0]}"}`)).toBe(1);
    });
  });

  it('counts a drift repair after `ip rule del` of a symroute rule', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    await startRunning(lab, host.ns, '');
    const before = await ownedRuleLines(lab, host.ns);
    const table = await tableOf(lab, host.ns, 'b0');
    const l = lab;

    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[0]!, 'lookup', String(table), 'pref', '30000');
    await eventually(async () => expect(await ownedRuleLines(l, host.ns)).toEqual(before));

    const text = await eventually(async () => {
      const scraped = await scrape(l, host.ns);
      expect(sample(scraped, 'symroute_drift_repairs_total{kind="rule"}')).toBeGreaterThanOrEqual(1);
      expect(sample(scraped, 'symroute_reconciles_total{trigger="drift"}')).toBeGreaterThanOrEqual(1);
      expect(sample(scraped, 'symroute_in_sync')).toBe(1);
      return scraped;
    });
    expect(sample(text, 'symroute_drift_repairs_total{kind="route"}') ?? 0).toBe(0);
    const lint = await promtoolCheck(text);
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);
  });

  it('answers /healthz with 200 when in sync', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    await startRunning(lab, host.ns, '');
    const l = lab;
    const health = await eventually(async () => {
      const response = await httpGet(l, host.ns, '/healthz');
      expect(response.status).toBe(200);
      return response;
    });
    expect(health.body).toBe('ok\n');
  });

  it('answers /healthz with 503 and exports symroute_in_sync 0 while the kernel refuses a change', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    // The kernel rejects the default route via 203.0.113.99, every retry.
    await lab.refuseGateway(host.ns, 'b0', '203.0.113.99');
    const { daemon } = await startRunning(lab, host.ns, 'gateways:\n  b0:\n    ipv4: 203.0.113.99\n');
    const l = lab;
    await eventually(async () => {
      expect((await httpGet(l, host.ns, '/healthz')).status).toBe(503);
      expect(sample(await scrape(l, host.ns), 'symroute_in_sync')).toBe(0);
    });
    const text = await scrape(lab, host.ns);
    expect(sample(text, 'symroute_netlink_errors_total{op="add_route",errno="ENETUNREACH"}')).toBeGreaterThanOrEqual(1);
    expect(alive(daemon)).toBe(true);
    const lint = await promtoolCheck(text);
    expect(lint.output).toBe('');
  });

  it('serves nothing with metrics.listen: false (connection refused)', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    const { daemon } = await startRunning(lab, host.ns, 'metrics:\n  listen: false\n');
    expect(await lab.ownedRules(host.ns)).toHaveLength(2);
    expect(await tcpConnect(lab, host.ns, 9477)).toBe('ECONNREFUSED');
    expect(daemon.messages()).not.toContainEqual(expect.stringMatching(/serving metrics/));
    expect(alive(daemon)).toBe(true);
  });

  it('logs a port already in use as an error and still converges', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    const squatter = track(
      spawn(
        'ip',
        [
          'netns', 'exec', host.ns, process.execPath, '-e',
          "require('node:net').createServer().listen(9477, '127.0.0.1', () => console.log('listening'))",
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    const squatterOut = collectLines(squatter);
    await eventually(() => expect(squatterOut).toContain('listening'));

    const { daemon } = await startRunning(lab, host.ns, '');
    expect(await ownedRuleLines(lab, host.ns)).toHaveLength(2);
    const error = daemon.records.find((r) => r.level === 50 && r.msg.startsWith('cannot serve metrics'));
    expect(error?.msg).toMatch(/^cannot serve metrics on 127\.0\.0\.1:9477: .*EADDRINUSE/);
    expect(daemon.messages()).not.toContainEqual(expect.stringMatching(/^serving metrics/));
    expect(daemon.messages()).toContainEqual('running: 2 interfaces, 2 rules, 2 routes, in sync');
    expect(alive(daemon)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------

/** `ip monitor route` in `ns`, synchronised with sentinel routes so no event is missed. */
async function routeMonitor(l: Lab, ns: string): Promise<{ lines: string[]; sync: () => Promise<void> }> {
  const child = track(spawn('ip', ['-n', ns, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const lines = collectLines(child);
  let round = 0;
  const sync = async () => {
    // Add, then delete, a blackhole route in a table symroute never uses; once the monitor
    // printed the deletion it has printed every route event before it.
    const dst = `198.51.100.${77 + (round++ % 100)}`;
    for (const action of ['add', 'del']) await l.ip(ns, 'route', action, 'blackhole', `${dst}/32`, 'table', '77');
    await eventually(() => expect(lines.some((line) => line.startsWith('Deleted') && line.includes(`${dst} `))).toBe(true));
  };
  // The monitor subscribes asynchronously: announce fresh sentinels until one shows up.
  // (Each must be a new route: replacing an identical one is not reliably announced.)
  let attempt = 0;
  await eventually(async () => {
    const dst = `198.51.100.${240 + (attempt++ % 10)}/32`;
    await l.ip(ns, 'route', 'add', 'blackhole', dst, 'table', '77');
    await l.ip(ns, 'route', 'del', 'blackhole', dst, 'table', '77');
    expect(lines.some((line) => /198\.51\.100\.24\d/.test(line))).toBe(true);
  });
  await sync();
  return { lines, sync };
}

describe('SIGHUP reload', () => {
  it('applies a valid new config as a diff, leaving unchanged routes alone', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3);
    const { daemon, config } = await startRunning(lab, host.ns, 'rule:\n  priority: 30000\n');
    const tables = await Promise.all(host.nics.map((nic) => tableOf(lab!, host.ns, nic)));
    expect(await ownedRuleLines(lab, host.ns)).toEqual(
      host.v4.map((src, k) => `from ${src} lookup ${tables[k]} pref 30000`).sort(),
    );
    const keptRoutes = [await lab.routes(host.ns, tables[0]!), await lab.routes(host.ns, tables[2]!)];
    expect(keptRoutes.map((r) => r.length)).toEqual([1, 1]);
    const monitor = await routeMonitor(lab, host.ns);
    const monitorFrom = monitor.lines.length;
    const logFrom = daemon.lines.length;

    // Same file, new contents: rules move to 31000 and b1 is no longer managed.
    lab.writeConfig('rule:\n  priority: 31000\ninterfaces:\n  include: [b0, b2]\n');
    daemon.child.kill('SIGHUP');

    await eventually(() =>
      expect(recordsSince(daemon, logFrom).map((r) => r.msg)).toContainEqual(
        `reloaded configuration from ${config}: 2 interfaces, 2 rules, 2 routes, in sync`,
      ),
    );
    expect(await ownedRuleLines(lab, host.ns)).toEqual(
      [`from ${host.v4[0]} lookup ${tables[0]} pref 31000`, `from ${host.v4[2]} lookup ${tables[2]} pref 31000`].sort(),
    );
    expect(await lab.routes(host.ns, tables[1]!)).toEqual([]); // b1's table is gone
    expect(await lab.routes(host.ns, tables[0]!)).toEqual(keptRoutes[0]);
    expect(await lab.routes(host.ns, tables[2]!)).toEqual(keptRoutes[1]);

    // Exactly the diff, one line per change; nothing about b0's or b2's routes.
    const changes = recordsSince(daemon, logFrom)
      .map((r) => r.msg)
      .filter((msg) => CHANGE.test(msg));
    // In sorted order. Even the rule of the NIC no longer managed names it.
    expect(changes.sort()).toEqual([
      `added rule from ${host.v4[0]} lookup ${tables[0]} pref 31000 (b0)`,
      `added rule from ${host.v4[2]} lookup ${tables[2]} pref 31000 (b2)`,
      `deleted route 198.18.2.0/24 dev b1 table ${tables[1]} scope link src ${host.v4[1]} (b1)`,
      `deleted rule from ${host.v4[0]} lookup ${tables[0]} pref 30000 (b0)`,
      `deleted rule from ${host.v4[1]} lookup ${tables[1]} pref 30000 (b1)`,
      `deleted rule from ${host.v4[2]} lookup ${tables[2]} pref 30000 (b2)`,
    ]);
    for (const msg of changes.filter((m) => m.includes(' route '))) expect(msg).not.toMatch(/dev b[02] /);

    // The kernel agrees: no route event in the kept tables, b1's route deleted.
    await monitor.sync();
    const events = monitor.lines.slice(monitorFrom);
    const kept = new RegExp(`\\btable (${tables[0]}|${tables[2]})\\b`);
    expect(events.filter((e) => kept.test(e))).toEqual([]);
    expect(events).toContainEqual(expect.stringMatching(new RegExp(`^Deleted 198\\.18\\.2\\.0/24 dev b1 table ${tables[1]} `)));

    const text = await scrape(lab, host.ns);
    expect(sample(text, 'symroute_config_reloads_total{result="success"}')).toBe(1);
    expect(sample(text, 'symroute_config_reloads_total{result="failure"}')).toBe(0);
    expect(sample(text, 'symroute_config_last_reload_successful')).toBe(1);
    expect(sample(text, 'symroute_managed_interfaces')).toBe(2);
    expect(alive(daemon)).toBe(true);
  });

  it('rejects an invalid config whole: file:line logged, state unchanged, drift still repaired', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3);
    const { daemon, config } = await startRunning(lab, host.ns, 'rule:\n  priority: 30000\n');
    const before = await ipv4RulesAndRoutes(lab, host.ns);
    const rulesBefore = await ownedRuleLines(lab, host.ns);
    const logFrom = daemon.lines.length;
    const l = lab;

    // Valid changes on lines 1-4, an invalid value on line 6: nothing of it may be applied.
    lab.writeConfig(['rule:', '  priority: 31000', 'interfaces:', '  include: [b0, b2]', 'table:', '  base: 7', ''].join('\n'));
    daemon.child.kill('SIGHUP');

    const rejection = await eventually(() => {
      const record = recordsSince(daemon, logFrom).find((r) => r.level === 50);
      expect(record).toBeDefined();
      return record!;
    });
    expect(rejection.msg).toContain(`${config}:6: table.base:`);
    expect(rejection.msg).toMatch(/keeping the running config/);
    const text = await eventually(async () => {
      const scraped = await scrape(l, host.ns);
      expect(sample(scraped, 'symroute_config_reloads_total{result="failure"}')).toBe(1);
      return scraped;
    });
    expect(sample(text, 'symroute_config_reloads_total{result="success"}')).toBe(0);
    expect(sample(text, 'symroute_config_last_reload_successful')).toBe(0);
    expect(await ipv4RulesAndRoutes(lab, host.ns)).toEqual(before);
    expect(recordsSince(daemon, logFrom).filter((r) => CHANGE.test(r.msg))).toEqual([]);
    expect(alive(daemon)).toBe(true);

    // Still running the old config: a deleted rule comes back at priority 30000.
    const table = await tableOf(lab, host.ns, 'b1');
    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[1]!, 'lookup', String(table), 'pref', '30000');
    await eventually(async () => expect(await ownedRuleLines(l, host.ns)).toEqual(rulesBefore));
    await eventually(async () =>
      expect(sample(await scrape(l, host.ns), 'symroute_drift_repairs_total{kind="rule"}')).toBeGreaterThanOrEqual(1),
    );
    expect(alive(daemon)).toBe(true);
  });

  it('refuses a protocol change on reload and keeps running the old config', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    const { daemon } = await startRunning(lab, host.ns, '');
    const before = await ipv4RulesAndRoutes(lab, host.ns);
    const logFrom = daemon.lines.length;
    const l = lab;

    lab.writeConfig('protocol: 84\n');
    daemon.child.kill('SIGHUP');

    const rejection = await eventually(() => {
      const record = recordsSince(daemon, logFrom).find((r) => r.level === 50);
      expect(record).toBeDefined();
      return record!;
    });
    expect(rejection.msg).toMatch(/protocol: cannot change from 83 to 84 while running/);
    await eventually(async () => {
      const text = await scrape(l, host.ns);
      expect(sample(text, 'symroute_config_reloads_total{result="failure"}')).toBe(1);
      expect(sample(text, 'symroute_config_last_reload_successful')).toBe(0);
    });
    expect(await ipv4RulesAndRoutes(lab, host.ns)).toEqual(before);
    expect(alive(daemon)).toBe(true);
  });

  it('rejects a config file over 1 MiB on reload, by its size, and keeps running the old config', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    const { daemon, config } = await startRunning(lab, host.ns, '');
    const before = await ipv4RulesAndRoutes(lab, host.ns);
    const logFrom = daemon.lines.length;
    const l = lab;

    // Valid YAML that would move every rule, padded with comments to 2 MiB.
    const valid = 'rule:\n  priority: 31000\n';
    lab.writeConfig(valid + `${'#'.repeat(1023)}\n`.repeat(2048));
    daemon.child.kill('SIGHUP');

    const rejection = await eventually(() => {
      const record = recordsSince(daemon, logFrom).find((r) => r.level === 50);
      expect(record, daemon.log()).toBeDefined();
      return record!;
    });
    expect(rejection.msg).toBe(
      `config reload rejected, keeping the running config: ${config}: config is larger than 1048576 bytes (1 MiB), the most symroute reads`,
    );
    await eventually(async () =>
      expect(sample(await scrape(l, host.ns), 'symroute_config_reloads_total{result="failure"}')).toBe(1),
    );
    expect(await ipv4RulesAndRoutes(lab, host.ns)).toEqual(before);
    expect(alive(daemon)).toBe(true);
  });

  it('survives a storm of 20 SIGHUPs with rewrites in between and ends on the final config', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3);
    const { daemon, config } = await startRunning(lab, host.ns, '');
    const tables = await Promise.all(host.nics.map((nic) => tableOf(lab!, host.ns, nic)));
    const logFrom = daemon.lines.length;
    const l = lab;

    const variants = [
      'rule:\n  priority: 30100\n',
      'rule:\n  priority: 30200\ninterfaces:\n  include: [b0, b1]\n',
      'rule:\n  priority: 0\n', // invalid
      '',
      'interfaces:\n  include: [b0]\n',
    ];
    const finalConfig = 'rule:\n  priority: 31000\ninterfaces:\n  include: [b0, b2]\n';
    for (let i = 0; i < 20; i++) {
      if (i === 19) lab.writeConfig(finalConfig);
      else if (i % 3 === 0) lab.writeConfig(variants[(i / 3) % variants.length]!);
      daemon.child.kill('SIGHUP');
    }

    const expected = [
      `from ${host.v4[0]} lookup ${tables[0]} pref 31000`,
      `from ${host.v4[2]} lookup ${tables[2]} pref 31000`,
    ].sort();
    await eventually(async () => {
      expect(await ownedRuleLines(l, host.ns)).toEqual(expected);
      const reloads = recordsSince(daemon, logFrom).filter((r) => r.msg.startsWith('reloaded configuration'));
      expect(reloads.at(-1)?.msg).toBe(`reloaded configuration from ${config}: 2 interfaces, 2 rules, 2 routes, in sync`);
      const text = await scrape(l, host.ns);
      expect(sample(text, 'symroute_config_last_reload_successful')).toBe(1);
      expect(sample(text, 'symroute_in_sync')).toBe(1);
    }, 20_000);
    expect(alive(daemon)).toBe(true);
    expect(await lab.routes(host.ns, tables[1]!)).toEqual([]);
    expect((await lab.routes(host.ns, tables[0]!)).map((r) => r.dev)).toEqual(['b0']);
    expect((await lab.routes(host.ns, tables[2]!)).map((r) => r.dev)).toEqual(['b2']);
    const text = await scrape(lab, host.ns);
    const reloads =
      sample(text, 'symroute_config_reloads_total{result="success"}')! +
      sample(text, 'symroute_config_reloads_total{result="failure"}')!;
    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(reloads).toBeLessThanOrEqual(20);

    // Still alive and still working: drift is repaired under the final config.
    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[2]!, 'lookup', String(tables[2]), 'pref', '31000');
    await eventually(async () => expect(await ownedRuleLines(l, host.ns)).toEqual(expected));
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------

describe('systemd notify protocol', () => {
  it('speaks READY/RELOADING/STOPPING over an abstract socket in the daemon namespace', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3);
    const address = `@symroute-test-${process.pid}-notify`;
    // The listener freezes the daemon (SIGSTOP) on every READY=1, so the kernel can be
    // inspected exactly as the daemon left it when it said it was ready.
    const listener = await NotifyListener.start(address, { ns: host.ns, stopSenderOn: 'READY=1' });
    const config = lab.writeConfig('rule:\n  priority: 30000\n');
    const daemon = lab.startDaemon(host.ns, ['--config', config], {
      NOTIFY_SOCKET: address,
      WATCHDOG_USEC: undefined,
      WATCHDOG_PID: undefined,
    });
    const tables = await Promise.all(host.nics.map((nic) => tableOf(lab!, host.ns, nic)));
    const rulesAt = (priority: number) => host.v4.map((src, k) => `from ${src} lookup ${tables[k]} pref ${priority}`).sort();

    const ready = await listener.next(has('READY=1'));
    const first = listener.notifications[ready]!;
    expect(first.stopped_sender).toBe(true);
    try {
      expect(await ownedRuleLines(lab, host.ns)).toEqual(rulesAt(30000));
    } finally {
      resume(daemon);
    }
    expect(ready).toBe(0); // nothing before READY=1
    expect(first.pid).toBe(daemon.child.pid);
    expect(field(first, 'STATUS')).toBe('3 interfaces, 3 rules, 3 routes, in sync');

    // Reload: RELOADING=1 and MONOTONIC_USEC in one datagram, then READY=1 once applied.
    lab.writeConfig('rule:\n  priority: 31000\n');
    const sentAt = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC, like the daemon's
    daemon.child.kill('SIGHUP');
    const reloading = await listener.next(has('RELOADING=1'), ready + 1);
    const again = await listener.next(has('READY=1'), reloading + 1);
    try {
      expect(listener.notifications[again]!.stopped_sender).toBe(true);
      expect(await ownedRuleLines(lab, host.ns)).toEqual(rulesAt(31000));
    } finally {
      resume(daemon);
    }
    const reloadingNote = listener.notifications[reloading]!;
    const monotonic = field(reloadingNote, 'MONOTONIC_USEC');
    expect(monotonic).toMatch(/^\d+$/);
    expect(BigInt(monotonic!)).toBeGreaterThanOrEqual(sentAt);
    expect(BigInt(monotonic!)).toBeLessThanOrEqual(BigInt(reloadingNote.monotonic_usec));
    expect(listener.count(has('READY=1'), ready + 1, reloading)).toBe(0);
    expect(field(listener.notifications[again]!, 'STATUS')).toBe('3 interfaces, 3 rules, 3 routes, in sync');

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    await listener.flush();
    const stopping = await listener.next(has('STOPPING=1'), again + 1);
    expect(listener.count(has('READY=1'), stopping)).toBe(0);
    // No WATCHDOG_USEC, no pings; and every datagram came from the main process.
    expect(listener.count((n) => n.data.includes('WATCHDOG=1'))).toBe(0);
    expect(listener.notifications.filter((n) => !n.data.startsWith('X_TEST_SENTINEL')).map((n) => n.pid)).toEqual(
      listener.notifications.filter((n) => !n.data.startsWith('X_TEST_SENTINEL')).map(() => daemon.child.pid),
    );
  });

  it('pings WATCHDOG=1 over a path socket outside the namespace while WATCHDOG_USEC is set', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    const address = join(lab.dir, 'notify.sock');
    const listener = await NotifyListener.start(address); // in the test's own namespace
    const daemon = lab.startDaemon(host.ns, ['--config', lab.writeConfig('')], {
      NOTIFY_SOCKET: address,
      WATCHDOG_USEC: '200000',
      WATCHDOG_PID: undefined,
    });

    const ready = await listener.next(has('READY=1'));
    expect(field(listener.notifications[ready]!, 'STATUS')).toBe('2 interfaces, 2 rules, 2 routes, in sync');
    expect(await lab.ownedRules(host.ns)).toHaveLength(2);
    expect(listener.count(has('WATCHDOG=1'), 0, ready)).toBe(0);

    const watchdog = (n: Notification) => n.data === 'WATCHDOG=1';
    await eventually(() => expect(listener.count(watchdog, ready)).toBeGreaterThanOrEqual(5));
    const sofar = listener.count(watchdog, ready);
    // They keep coming, across a reconcile pass too.
    const table = await tableOf(lab, host.ns, 'b0');
    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[0]!, 'lookup', String(table), 'pref', '30000');
    await eventually(() => expect(listener.count(watchdog, ready)).toBeGreaterThanOrEqual(sofar + 5));
    expect(listener.notifications.filter(watchdog).every((n) => n.pid === daemon.child.pid)).toBe(true);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    await listener.flush();
    const stopping = await listener.next(has('STOPPING=1'), ready);
    expect(listener.count(watchdog, stopping)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------

const PRIORITY_OF_LEVEL: Record<number, number> = { 60: 2, 50: 3, 40: 4, 30: 6, 20: 7, 10: 7 };
/** With lab.refuseGateway(ns, 'b0', '203.0.113.99'): a change the kernel refuses, every retry. */
const BAD_GATEWAY = 'gateways:\n  b0:\n    ipv4: 203.0.113.99\n';

describe('logs', () => {
  it('prefixes every line with its syslog priority when stdout is the JOURNAL_STREAM', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    await lab.refuseGateway(host.ns, 'b0', '203.0.113.99');
    const config = lab.writeConfig(BAD_GATEWAY);
    const table = await tableOf(lab, host.ns, 'b0');
    const logPath = join(lab.dir, 'journal-stream.log');
    const fd = openSync(logPath, 'w');
    const { dev, ino } = fstatSync(fd, { bigint: true });
    let child: ChildProcess;
    try {
      child = track(
        spawn('ip', ['netns', 'exec', host.ns, process.execPath, CLI, 'run', '--config', config], {
          stdio: ['ignore', fd, 'pipe'],
          env: { ...process.env, JOURNAL_STREAM: `${dev}:${ino}`, NOTIFY_SOCKET: undefined },
        }),
      );
    } finally {
      closeSync(fd);
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const lines = () => readFileSync(logPath, 'utf8').split('\n').filter(Boolean);

    await eventually(() => {
      expect(lines()).toContainEqual(expect.stringMatching(/^<3>.*Nexthop has invalid gateway/));
      expect(lines()).toContainEqual(expect.stringMatching(/^<6>.*"msg":"running: /));
    });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const all = lines();
    for (const line of all) {
      const match = /^<([0-7])>(\{.*\})$/.exec(line);
      expect(match, line).not.toBeNull();
      const record = JSON.parse(match![2]!) as { level: number };
      expect(Number(match![1]), line).toBe(PRIORITY_OF_LEVEL[record.level]);
    }
    const info = all.filter((l) => l.startsWith('<6>')).map((l) => JSON.parse(l.slice(3)).msg as string);
    expect(info).toContainEqual(`added rule from ${host.v4[0]} lookup ${table} pref 30000 (b0)`);
    expect(info).toContainEqual('stopping, leaving rules and routes in place');
    const errors = all.filter((l) => l.startsWith('<3>')).map((l) => JSON.parse(l.slice(3)) as { msg: string; ifname?: string });
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0]!.msg).toContain(`adding route default via 203.0.113.99 dev b0 table ${table}`);
    expect(errors[0]!.msg).toContain('Nexthop has invalid gateway');
    expect(errors[0]!.ifname).toBe('b0');
  });

  it('writes plain JSON lines without JOURNAL_STREAM, or when it names another file', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    await lab.refuseGateway(host.ns, 'b0', '203.0.113.99');
    const other = openSync(join(lab.dir, 'not-stdout.log'), 'w');
    const { dev, ino } = fstatSync(other, { bigint: true });
    closeSync(other);

    for (const journalStream of [undefined, `${dev}:${ino}`]) {
      const daemon = lab.startDaemon(host.ns, ['--config', lab.writeConfig(BAD_GATEWAY)], {
        JOURNAL_STREAM: journalStream,
        NOTIFY_SOCKET: undefined,
      });
      await eventually(() => {
        expect(daemon.records.some((r) => r.level === 50 && r.msg.includes('Nexthop has invalid gateway'))).toBe(true);
        expect(daemon.messages()).toContainEqual(expect.stringMatching(/^running: /));
      });
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(daemon.lines.length).toBeGreaterThan(0);
      for (const line of daemon.lines) {
        expect(line, `JOURNAL_STREAM=${journalStream}`).toMatch(/^\{/);
        expect(JSON.parse(line)).toMatchObject({ level: expect.any(Number), name: 'symroute', msg: expect.any(String) });
      }
    }
  });

  it('has the "converged" line of an event in its log when SIGTERM comes right after it', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 1);
    const { daemon } = await startRunning(lab, host.ns, '');
    const converged = daemon.messages().filter((m) => m.startsWith('converged in ')).length;
    await lab.ip(host.ns, 'addr', 'add', '198.18.1.20/24', 'dev', 'b0');
    // Judged by the kernel, not the log: the stop follows the event's writes at once.
    const l = lab;
    await eventually(async () => expect((await l.ownedRules(host.ns, 4)).map((r) => r.src)).toContain('198.18.1.20'), 10_000, 1);
    expect(await daemon.stop('SIGTERM')).toBe(0);
    // (The pipe may still hold the last lines when the exit is seen.)
    await eventually(() => expect(daemon.messages().at(-1)).toBe('stopping, leaving rules and routes in place'));
    const messages = daemon.messages();
    expect(messages.filter((m) => m.startsWith('converged in ')).length).toBeGreaterThan(converged);
    expect(messages).toContainEqual(expect.stringMatching(/^added rule from 198\.18\.1\.20 /));
  });

  it('logs exactly one line per change, naming the interface', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 3, { ipv6: true });
    const { daemon } = await startRunning(lab, host.ns, '');
    const tables = await Promise.all(host.nics.map((nic) => tableOf(lab!, host.ns, nic)));
    const expected = host.nics.flatMap((nic, k) => [
      `added rule from ${host.v4[k]} lookup ${tables[k]} pref 30000 (${nic})`,
      `added rule from ${host.v6[k]} lookup ${tables[k]} pref 30000 (${nic})`,
      `added route 198.18.${k + 1}.0/24 dev ${nic} table ${tables[k]} scope link src ${host.v4[k]} (${nic})`,
      `added route 2001:db8:${k + 1}::/64 dev ${nic} table ${tables[k]} src ${host.v6[k]} metric 1024 (${nic})`,
    ]);
    expect(daemon.messages()).toContainEqual('running: 3 interfaces, 6 rules, 6 routes, in sync');
    const changes = daemon.records.filter((r) => CHANGE.test(r.msg));
    expect(changes.map((r) => r.msg).sort()).toEqual([...expected].sort());
    for (const record of changes) expect(record.msg).toContain(`(${record.ifname})`);
    expect((await lab.ownedRules(host.ns, 4)).length + (await lab.ownedRules(host.ns, 6)).length).toBe(6);

    // A repair is one more line for the one rule put back, and nothing else.
    const logFrom = daemon.lines.length;
    const l = lab;
    const repaired = `added rule from ${host.v4[1]} lookup ${tables[1]} pref 30000 (b1)`;
    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[1]!, 'lookup', String(tables[1]), 'pref', '30000');
    await eventually(() => expect(recordsSince(daemon, logFrom).map((r) => r.msg)).toContain(repaired));
    // Catch up: a second repair, logged after everything the first one caused.
    const marker = `added rule from ${host.v4[2]} lookup ${tables[2]} pref 30000 (b2)`;
    await lab.ip(host.ns, 'rule', 'del', 'from', host.v4[2]!, 'lookup', String(tables[2]), 'pref', '30000');
    await eventually(() => expect(recordsSince(daemon, logFrom).map((r) => r.msg)).toContain(marker));
    await eventually(async () => expect(await l.ownedRules(host.ns, 4)).toHaveLength(3));
    expect(recordsSince(daemon, logFrom).filter((r) => CHANGE.test(r.msg)).map((r) => r.msg)).toEqual([repaired, marker]);
  });
});

// ---------------------------------------------------------------------------------------

const AS_NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const ONLY_NET_ADMIN = [...AS_NOBODY, '--inh-caps=-all,+net_admin', '--ambient-caps=-all,+net_admin', '--bounding-set=-all,+net_admin'];
const NO_CAPS = [...AS_NOBODY, '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all'];
const CAP_NET_ADMIN_BIT = 1n << 12n;

async function runAs(
  ns: string,
  setpriv: string[],
  command: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('ip', ['netns', 'exec', ns, 'setpriv', ...setpriv, ...command], {
      env: { ...process.env, ...env },
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number | string | null; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : null, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
  }
}

/** uid 65534 must be able to run node and read the checkout and the config, or nothing here means anything. */
async function assertNobodyCanRun(ns: string, config: string): Promise<void> {
  const files = [
    CLI,
    join(REPO, 'package.json'),
    join(REPO, 'build/Release/symroute_native.node'),
    join(REPO, 'node_modules/pino/package.json'),
    config,
  ];
  const script =
    `const fs = require('node:fs');` +
    `const bad = ${JSON.stringify(files)}.filter((f) => { try { fs.accessSync(f, fs.constants.R_OK); return false; } catch { return true; } });` +
    `if (bad.length) { console.error(bad.join('\\n')); process.exit(1); }`;
  const result = await runAs(ns, AS_NOBODY, [process.execPath, '-e', script]);
  if (result.code !== 0) {
    throw new Error(
      `uid 65534 cannot run ${process.execPath} or read what symroute needs; make them world-readable:\n${result.stderr}`,
    );
  }
}

/** CapEff and Uid of a process started with `setpriv` flags, as the kernel reports them. */
async function credentialsUnder(ns: string, setpriv: string[]): Promise<{ capEff: bigint; uid: string }> {
  const { stdout } = await runAs(ns, setpriv, ['cat', '/proc/self/status']);
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(stdout)![1]!;
  const uid = /^Uid:\s*(\d+)/m.exec(stdout)![1]!;
  return { capEff: BigInt(`0x${capEff}`), uid };
}

describe('least privilege', () => {
  it('converges with --once as uid 65534 holding only CAP_NET_ADMIN', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2, { ipv6: true });
    chmodSync(lab.dir, 0o755);
    const config = lab.writeConfig('');
    chmodSync(config, 0o644);
    await assertNobodyCanRun(host.ns, config);
    expect(await credentialsUnder(host.ns, ONLY_NET_ADMIN)).toEqual({ capEff: CAP_NET_ADMIN_BIT, uid: '65534' });

    // Its own runtime directory for the lock and socket, as RuntimeDirectory= gives the service.
    const runtime = { RUNTIME_DIRECTORY: lab.runtimeDirectoryFor(65534) };
    const result = await runAs(host.ns, ONLY_NET_ADMIN, [process.execPath, CLI, 'run', '--once', '--config', config], runtime);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    const tables = await Promise.all(host.nics.map((nic) => tableOf(lab!, host.ns, nic)));
    expect(await ownedRuleLines(lab, host.ns, 4)).toEqual(host.v4.map((src, k) => `from ${src} lookup ${tables[k]} pref 30000`).sort());
    expect(await ownedRuleLines(lab, host.ns, 6)).toEqual(host.v6.map((src, k) => `from ${src} lookup ${tables[k]} pref 30000`).sort());
    expect(await ownedRoutes(lab, host.ns, 4)).toHaveLength(2);
    expect(await ownedRoutes(lab, host.ns, 6)).toHaveLength(2);
  });

  it('fails clearly (EPERM, naming the refused operation) without CAP_NET_ADMIN', async () => {
    lab = new Lab();
    const host = await multiNicHost(lab, 2);
    chmodSync(lab.dir, 0o755);
    const config = lab.writeConfig('');
    chmodSync(config, 0o644);
    await assertNobodyCanRun(host.ns, config);
    expect(await credentialsUnder(host.ns, NO_CAPS)).toEqual({ capEff: 0n, uid: '65534' });

    const runtime = { RUNTIME_DIRECTORY: lab.runtimeDirectoryFor(65534) };
    const result = await runAs(host.ns, NO_CAPS, [process.execPath, CLI, 'run', '--once', '--config', config], runtime);
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull(); // exited, was not killed by the timeout
    const errors = result.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; errno?: string })
      .filter((r) => r.level >= 50);
    // Every refused request says which one and why; after its retries, --once says it gave up.
    const refused = errors.filter((e) => e.errno !== undefined);
    expect(refused.length, result.stdout + result.stderr).toBeGreaterThanOrEqual(1);
    for (const error of refused) {
      expect(error.errno).toBe('EPERM');
      expect(error.msg).toMatch(/^adding (rule from|route) .*: operation not permitted \(EPERM\)$/);
    }
    expect(errors.filter((e) => e.errno === undefined).map((e) => e.msg)).toEqual([
      expect.stringMatching(/^could not converge after 3 attempts: /),
    ]);
    expect(errors.map((e) => e.msg)).toContainEqual(expect.stringMatching(new RegExp(`^adding rule from ${host.v4[0]} lookup \\d+ pref 30000: `)));
    expect(await lab.ownedRules(host.ns)).toEqual([]);
    expect(await ownedRoutes(lab, host.ns, 4)).toEqual([]);
  });
});
