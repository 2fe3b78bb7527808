// A throwaway network lab for integration tests: network namespaces, veth pairs and bridges
// made with iproute2, the real daemon running inside them, and `ip -json` plus real traffic
// as the independent judge of what the kernel holds. Everything a Lab creates is removed by
// cleanup(), which tests call from afterEach so it also runs when a test fails.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'dist/cli.js');
const PROBE = join(REPO, 'dist/probe.js');
let labCounter = 0;

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

export class Lab {
  private readonly id = `srt${process.pid % 100000}x${++labCounter}`;
  private readonly namespaces: string[] = [];
  private readonly daemons: DaemonProcess[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'symroute-lab-'));

  /** Creates a namespace; the returned name is unique to this lab. */
  async namespace(shortName: string): Promise<string> {
    const name = `${this.id}${shortName}`;
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.ip(name, 'link', 'set', 'lo', 'up');
    return name;
  }

  async ip(ns: string, ...args: string[]): Promise<string> {
    const { stdout } = await run('ip', ['-n', ns, ...args]);
    return stdout;
  }

  async ipJson<T>(ns: string, ...args: string[]): Promise<T> {
    const text = await this.ip(ns, '-json', ...args);
    return (text.trim() ? JSON.parse(text) : []) as T;
  }

  async exec(ns: string, ...command: string[]): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', ns, ...command]);
    return stdout;
  }

  async sysctl(ns: string, ...settings: string[]): Promise<void> {
    await this.exec(ns, 'sysctl', '-qw', ...settings);
  }

  /** A veth pair with one end in each namespace, both ends up. */
  async veth(nsA: string, nameA: string, nsB: string, nameB: string): Promise<void> {
    await this.ip(nsA, 'link', 'add', nameA, 'type', 'veth', 'peer', 'name', nameB, 'netns', nsB);
    await this.ip(nsA, 'link', 'set', nameA, 'up');
    await this.ip(nsB, 'link', 'set', nameB, 'up');
  }

  async bridge(ns: string, name: string): Promise<void> {
    await this.ip(ns, 'link', 'add', name, 'type', 'bridge');
    await this.ip(ns, 'link', 'set', name, 'up');
  }

  /** A veth from `hostNs` into bridge `bridgeName` in `switchNs`. */
  async plugIntoBridge(switchNs: string, bridgeName: string, port: string, hostNs: string, nic: string): Promise<void> {
    await this.veth(switchNs, port, hostNs, nic);
    await this.ip(switchNs, 'link', 'set', port, 'master', bridgeName);
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

  /** Which of `addresses` answer from `ns` (TCP: connected or refused). */
  async probe(ns: string, addresses: string[], timeoutMs = 3000): Promise<Record<string, boolean>> {
    // Forget failed neighbour entries so an earlier probe cannot taint this one.
    await this.ip(ns, 'neigh', 'flush', 'all').catch(() => undefined);
    const out = await this.exec(ns, process.execPath, PROBE, String(timeoutMs), ...addresses);
    return JSON.parse(out) as Record<string, boolean>;
  }

  async reachable(ns: string, addresses: string[], timeoutMs?: number): Promise<string[]> {
    const results = await this.probe(ns, addresses, timeoutMs);
    return addresses.filter((a) => results[a]);
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
    for (const ns of this.namespaces.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
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
