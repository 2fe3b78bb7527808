// The integration tests' lab: src/netns.ts's namespaces, veth pairs, bridges and probe, plus
// the real daemon running inside them and `ip -json` as the independent judge of what the
// kernel holds. Everything a Lab creates is removed by cleanup(), which tests call from
// afterEach so it also runs when a test fails.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { NetnsLab } from '../../src/netns.js';

const run = promisify(execFile);
export const REPO = resolve(import.meta.dirname, '../..');
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

  rules(ns: string, family: 4 | 6 = 4): Promise<IpRule[]> {
    return this.ipJson(ns, `-${family}`, 'rule', 'show');
  }

  /** Rules symroute owns (its default protocol 83). */
  async ownedRules(ns: string, family: 4 | 6 = 4): Promise<IpRule[]> {
    return (await this.rules(ns, family)).filter((r) => r.protocol === '83');
  }

  async routes(ns: string, table: number | string, family: 4 | 6 = 4): Promise<IpRoute[]> {
    try {
      return await this.ipJson(ns, `-${family}`, 'route', 'show', 'table', String(table));
    } catch {
      return []; // a table that does not exist
    }
  }

  async routeGet(ns: string, dst: string, from: string): Promise<IpRoute> {
    const [route] = await this.ipJson<IpRoute[]>(ns, 'route', 'get', dst, 'from', from);
    return route!;
  }

  /** All rules and IPv4 routes as `ip -json` text; IPv6 link-local routes move with DAD on their own. */
  async kernelState(ns: string): Promise<string> {
    const parts = await Promise.all([
      this.ip(ns, '-json', '-4', 'rule', 'show'),
      this.ip(ns, '-json', '-6', 'rule', 'show'),
      this.ip(ns, '-json', '-4', 'route', 'show', 'table', 'all'),
    ]);
    return parts.join('\n');
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

  async cleanup(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop('SIGKILL')));
    await this.removeNamespaces();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

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
