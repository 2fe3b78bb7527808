// The outside observer: `ip -ts monitor address rule route` in a namespace, so latency is
// judged by a netlink listener that is not symroute, from the kernel's own notifications.
// ip stamps each notification (realtime, µs) as it prints it, so it must run as soon as one
// arrives: it runs SCHED_FIFO (chrt), and writes to a file, never blocking on a pipe the
// bench may be slow to read. The bench compares timestamps of the same listener, or with
// its own realtime clock for the reference side.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { FileLines } from './tail.js';

export interface Seen {
  /** Realtime in ms (µs resolution) when `ip monitor` read the notification. */
  readonly at: number;
  readonly deleted: boolean;
}

/** Realtime now in ms, µs resolution, on the same clock as `ip -ts`. */
export const realtimeMs = (): number => performance.timeOrigin + performance.now();

/** Keys the bench waits for: an address, a symroute rule by source, a symroute route by dst and table. */
export const addressKey = (cidr: string): string => `addr ${cidr}`;
export const ruleKey = (src: string): string => `rule ${src}`;
export const routeKey = (dst: string, table: number | string): string => `route ${dst} ${table}`;

const STAMP = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] (Deleted )?(.*)$/;
const ADDRESS = /^\d+: \S+\s+inet6? (\S+) /;
const RULE = /^\d+:\s+from (\S+) lookup \S+ proto 83\b/;
const ROUTE = /^(\S+) .*\btable (\d+) proto 83\b/;

export class Monitor {
  private readonly child: ChildProcess;
  private readonly output: FileLines;
  private readonly seen = new Map<string, Seen[]>();
  private readonly waiters = new Map<string, Array<() => void>>();
  private stderr = '';
  /** Notifications parsed, of any kind. */
  count = 0;

  private constructor(ns: string, outputPath: string) {
    const output = openSync(outputPath, 'w');
    this.child = spawn('chrt', ['--fifo', '50', 'ip', '-n', ns, '-ts', 'monitor', 'address', 'rule', 'route'], {
      stdio: ['ignore', output, 'pipe'],
      env: { ...process.env, TZ: 'UTC' },
    });
    closeSync(output);
    this.output = new FileLines(outputPath, (lines) => lines.forEach((line) => this.parse(line)));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  /** Starts a monitor writing to `outputPath` and waits until it demonstrably listens (it sees a marker address). */
  static async start(ns: string, markerDev: string, outputPath: string): Promise<Monitor> {
    const monitor = new Monitor(ns, outputPath);
    const marker = '203.0.113.254/32';
    for (let attempt = 0; ; attempt++) {
      await spawnAndWait('ip', ['-n', ns, 'addr', 'add', marker, 'dev', markerDev]);
      const seen = await monitor.next(addressKey(marker), false, 0, 500).catch(() => undefined);
      await spawnAndWait('ip', ['-n', ns, 'addr', 'del', marker, 'dev', markerDev]);
      if (seen) return monitor;
      if (attempt === 20) throw new Error(`ip monitor in ${ns} saw nothing: ${monitor.stderr}`);
    }
  }

  private parse(line: string): void {
    const stamped = STAMP.exec(line);
    if (!stamped) return; // a continuation line (valid_lft …)
    this.count++;
    const at = Date.parse(`${stamped[1]}Z`) + Number(stamped[2]) / 1000;
    const deleted = stamped[3] !== undefined;
    const body = stamped[4]!;
    let key: string | undefined;
    let match: RegExpExecArray | null;
    if ((match = ADDRESS.exec(body))) key = addressKey(match[1]!);
    else if ((match = RULE.exec(body))) key = ruleKey(match[1]!);
    else if ((match = ROUTE.exec(body))) key = routeKey(match[1]!, match[2]!);
    if (key === undefined) return;
    let list = this.seen.get(key);
    if (!list) this.seen.set(key, (list = []));
    list.push({ at, deleted });
    const waiters = this.waiters.get(key);
    if (waiters) {
      this.waiters.delete(key);
      for (const wake of waiters) wake();
    }
  }

  /** How many notifications for `key` have been seen so far (a cursor for next()). */
  seenCount(key: string): number {
    return this.seen.get(key)?.length ?? 0;
  }

  /** The first notification for `key` (an add, or a delete) after the first `after` seen ones. */
  async next(key: string, deleted: boolean, after: number, timeoutMs = 30_000): Promise<Seen> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.seen
        .get(key)
        ?.slice(after)
        .find((s) => s.deleted === deleted);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`ip monitor: no ${deleted ? 'deletion' : 'addition'} of ${key} within ${timeoutMs} ms`);
      this.output.read(); // in case a change notification was coalesced away
      if (this.seen.get(key)?.slice(after).some((s) => s.deleted === deleted)) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        const wake = () => (clearTimeout(timer), resolve());
        let list = this.waiters.get(key);
        if (!list) this.waiters.set(key, (list = []));
        list.push(wake);
      });
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    this.output.close();
  }
}

/** Runs a program to completion; rejects with its stderr on failure. */
export function spawnAndWait(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || `exit ${code}`}`))));
  });
}
