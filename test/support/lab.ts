// The integration tests' lab: src/lab/netns.ts's namespaces, veth pairs, bridges and probe, plus
// the real daemon running inside them and `ip -N -json` as the independent judge of what the
// kernel holds. Everything a Lab creates is removed by cleanup(), which tests call from
// afterEach so it also runs when a test fails.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { NetnsLab } from '../../src/lab/netns.js';

const run = promisify(execFile);
export const REPO = resolve(import.meta.dirname, '../..');
const TABLE_BASE = 1000;
const CLI = join(REPO, 'dist/cli.js');

export interface IpRule {
  priority: number;
  src?: string;
  srclen?: number;
  table: string;
  protocol?: string;
  [key: string]: unknown;
}
export interface IpRoute {
  dst: string;
  dev?: string;
  gateway?: string;
  prefsrc?: string;
  protocol?: string;
  scope?: string;
  table?: string;
  metric?: number;
  [key: string]: unknown;
}

export class DaemonProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private stderrText = '';

  constructor(readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const parts = text.split('\n');
      partial = parts.pop()!;
      this.lines.push(...parts);
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderrText += chunk.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** Parsed JSON log records. */
  get records(): Array<Record<string, unknown> & { msg: string; level: number }> {
    return this.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  }

  messages(): string[] {
    return this.records.map((r) => r.msg);
  }

  /**
   * Error-level log lines. Routine changes and repairs never need error recovery: an error
   * means the daemon's picture of the kernel was wrong, or the kernel refused something.
   */
  errors(): string[] {
    return this.records.filter((r) => r.level >= 50).map((r) => r.msg);
  }

  /** The whole log, to attach to assertions whose failure it would explain. */
  log(): string {
    return `daemon log:\n${this.lines.join('\n')}`;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export class Lab extends NetnsLab {
  private readonly daemons: DaemonProcess[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'symroute-lab-'));

  constructor() {
    super('srt');
  }

  async ipJson<T>(ns: string, ...args: string[]): Promise<T> {
    const text = await this.ip(ns, '-json', ...args);
    return (text.trim() ? JSON.parse(text) : []) as T;
  }

  /**
   * Rules or routes as `ip -N -json` prints them: tables and protocols as numbers, also where
   * rt_tables.d / rt_protos.d name them (symroute writes such names itself). -N numbers scopes
   * and route types too; those are named again, so each object reads as plain `ip -json` would.
   */
  async ipJsonNumeric<T extends object>(ns: string, ...args: string[]): Promise<T[]> {
    return (await this.ipJson<Array<Record<string, unknown>>>(ns, '-N', ...args)).map(namedScopeAndType) as T[];
  }

  /** Rules with numbers for tables and protocols, also where rt_tables.d names symroute's. */
  rules(ns: string, family: 4 | 6 = 4): Promise<IpRule[]> {
    return this.ipJsonNumeric(ns, `-${family}`, 'rule', 'show');
  }

  /** Rules symroute owns (its default protocol 83). */
  async ownedRules(ns: string, family: 4 | 6 = 4): Promise<IpRule[]> {
    return (await this.rules(ns, family)).filter((r) => r.protocol === '83');
  }

  async routes(ns: string, table: number | string, family: 4 | 6 = 4): Promise<IpRoute[]> {
    try {
      return await this.ipJsonNumeric(ns, `-${family}`, 'route', 'show', 'table', String(table));
    } catch {
      return []; // a table that does not exist
    }
  }

  async routeGet(ns: string, dst: string, from: string): Promise<IpRoute> {
    const [route] = await this.ipJsonNumeric<IpRoute>(ns, 'route', 'get', dst, 'from', from);
    return route!;
  }

  async ifindex(ns: string, dev: string): Promise<number> {
    const [link] = await this.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', dev);
    return link!.ifindex;
  }

  /** A namespace with a NIC n0 (and its veth peer n1) holding an address symroute would manage. */
  async hostWithNic(): Promise<string> {
    const ns = await this.namespace('h');
    await this.veth(ns, 'n0', ns, 'n1');
    await this.ip(ns, 'addr', 'add', '198.18.5.10/24', 'dev', 'n0');
    return ns;
  }

  /** Series of the daemon's metrics (on 127.0.0.1:9477) whose name starts with `prefix`, with their values. */
  async metricSeries(ns: string, prefix: string): Promise<Record<string, number>> {
    const text = await this.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) if (line.startsWith(prefix)) out[line.slice(0, line.lastIndexOf(' '))] = Number(line.slice(line.lastIndexOf(' ') + 1));
    return out;
  }

  /** symroute's rules as sorted ruleText lines. */
  async ownedRuleTexts(ns: string): Promise<string[]> {
    return (await this.ownedRules(ns)).map(ruleText).sort();
  }

  /** The table symroute uses for a NIC with nothing pinned: table.base (1000) + ifindex. */
  async tableOf(ns: string, nic: string): Promise<number> {
    const [link] = await this.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', nic);
    return TABLE_BASE + link!.ifindex;
  }

  /** symroute's rules as sorted `from <src> lookup <table> pref <n>` lines (duplicates kept). */
  async ownedRuleLines(ns: string, family: 4 | 6 = 4): Promise<string[]> {
    return (await this.ownedRules(ns, family)).map(ruleLine).sort();
  }

  /** A table's routes as sorted `ip route`-like lines; a missing table reads as empty. */
  async tableLines(ns: string, table: number, family: 4 | 6 = 4): Promise<string[]> {
    return (await this.routes(ns, table, family)).map(routeLine).sort();
  }

  /**
   * Starts the daemon and waits for the end of its start-up convergence: it logs "running…"
   * only after its first pass that found nothing more to do. (Waiting for a state instead
   * would not do: after a restart the right state may be there before the daemon looked.)
   * Node's own start alone has taken over 10 s on a loaded 2-core machine: give it a minute.
   */
  async startConverged(ns: string, configPath = this.writeConfig(''), timeoutMs = 60_000): Promise<DaemonProcess> {
    const daemon = this.startDaemon(ns, ['--config', configPath]);
    await eventually(() => expect(daemon.messages(), daemon.stderr).toContainEqual(expect.stringMatching(/^running\b/)), timeoutMs);
    return daemon;
  }

  /**
   * Waits until the daemon has acted on everything that happened before this call, by
   * deleting one of its rules and waiting for the repair: netlink delivers notifications in
   * order and a pass always drains the socket first, so a pass that saw the deletion saw
   * every earlier event. Needed before asserting that something did NOT happen.
   */
  async daemonCaughtUp(ns: string, src: string, table: number): Promise<void> {
    await this.ip(ns, 'rule', 'del', 'from', src, 'lookup', String(table), 'pref', '30000');
    const line = ruleLine({ src, table: String(table), priority: 30000 });
    await eventually(async () => expect(await this.ownedRuleLines(ns)).toContain(line));
  }

  /** All rules and IPv4 routes as `ip -N -json` text; IPv6 link-local routes move with DAD on their own. */
  async kernelState(ns: string): Promise<string> {
    const parts = await Promise.all([
      this.ip(ns, '-N', '-json', '-4', 'rule', 'show'),
      this.ip(ns, '-N', '-json', '-6', 'rule', 'show'),
      this.ip(ns, '-N', '-json', '-4', 'route', 'show', 'table', 'all'),
    ]);
    return parts.join('\n');
  }

  /**
   * Makes the kernel refuse `default via <gateway> dev <dev>` in symroute's table, although
   * the planner takes the gateway for reachable: a device route to it in main (which the
   * planner counts, as the kernel's own fallback lookup does), and a foreign rule that turns
   * that lookup into "unreachable". The kernel answers ENETUNREACH "Nexthop has invalid
   * gateway", every retry. (A gateway simply outside the prefixes is no longer sent at all.)
   */
  async refuseGateway(ns: string, dev: string, gateway: string): Promise<void> {
    await this.ip(ns, 'route', 'add', gateway, 'dev', dev);
    await this.ip(ns, 'rule', 'add', 'to', gateway, 'unreachable', 'pref', '100');
  }

  writeConfig(yaml: string, name = 'symroute.yaml'): string {
    const path = join(this.dir, name);
    writeFileSync(path, yaml);
    return path;
  }

  /**
   * Starts `symroute <args>` inside `ns` and returns its handle. `env` adds variables to the
   * daemon's environment (NOTIFY_SOCKET, WATCHDOG_USEC, ...) on top of the inherited one;
   * a variable given as undefined is removed from it.
   */
  startDaemon(ns: string, args: string[] = [], env: Record<string, string | undefined> = {}): DaemonProcess {
    // `ip netns exec` execs the command with the environment it was given, so the daemon
    // keeps the child's pid (what systemd's NotifyAccess=main checks).
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'run', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const daemon = new DaemonProcess(child);
    this.daemons.push(daemon);
    return daemon;
  }

  /** Runs `symroute <args>` to completion inside `ns`. */
  async runCli(ns: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args]);
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  /**
   * A runtime directory as systemd's RuntimeDirectory= makes one for a service running as
   * `uid`: its own, mode 0755 — for a daemon started as that user (lab.dir must be 0755 too).
   */
  runtimeDirectoryFor(uid: number): string {
    const dir = join(this.dir, `run-${uid}`);
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, uid, uid);
    return dir;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop('SIGKILL')));
    await this.removeNamespaces();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `from <src> lookup <table> pref <n>`, as ip(8) prints a rule. */
// The names plain `ip -json` prints for the scopes and route types `ip -N` prints as numbers.
const SCOPE_NAMES: Record<string, string> = { '0': 'global', '200': 'site', '253': 'link', '254': 'host', '255': 'nowhere' };
const TYPE_NAMES: Record<string, string> = {
  '1': 'unicast',
  '2': 'local',
  '3': 'broadcast',
  '4': 'anycast',
  '5': 'multicast',
  '6': 'blackhole',
  '7': 'unreachable',
  '8': 'prohibit',
  '9': 'throw',
  '10': 'nat',
  '11': 'xresolve',
};
function namedScopeAndType(o: Record<string, unknown>): Record<string, unknown> {
  const named = { ...o };
  if (typeof o.scope === 'string') named.scope = SCOPE_NAMES[o.scope] ?? o.scope;
  if (typeof o.type === 'string') named.type = TYPE_NAMES[o.type] ?? o.type;
  return named;
}

/** A rule in ip(8) syntax, prefix length included, so a failed comparison reads like `ip rule` output. */
export const ruleText = (r: IpRule): string =>
  `from ${r.src}${r.srclen !== undefined ? `/${r.srclen}` : ''} lookup ${r.table} pref ${r.priority}`;

export const ruleLine = (r: Pick<IpRule, 'src' | 'table' | 'priority'>): string =>
  `from ${r.src} lookup ${r.table} pref ${r.priority}`;

/** One route as a short `ip route`-like line (the fields symroute sets). */
export function routeLine(r: IpRoute): string {
  return [
    r.dst,
    r.gateway && `via ${r.gateway}`,
    r.dev && `dev ${r.dev}`,
    r.scope && r.scope !== 'global' && `scope ${r.scope}`,
    r.prefsrc && `src ${r.prefsrc}`,
    r.protocol && `proto ${r.protocol}`,
  ]
    .filter(Boolean)
    .join(' ');
}

/** Retries `check` until it stops throwing; rethrows its last error after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
