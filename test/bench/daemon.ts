// The daemon under test: dist/cli.js run in a namespace, its JSON log read as it comes (the
// in-process figures are its own convergence records, `durationSeconds`), and its memory and
// scheduling read from /proc. `ip netns exec` execs node, so the child's pid is the daemon's.
// The log goes to a file, not a pipe: pino writes synchronously and, on a full pipe, spins
// until the reader catches up, so a busy benchmark process would slow the daemon it measures.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FileLines } from './tail.js';

export const REPO = resolve(import.meta.dirname, '../..');
export const CLI = join(REPO, 'dist/cli.js');

interface LogRecord {
  level: number;
  time: string | number;
  msg: string;
  durationSeconds?: number;
  stageMicros?: Record<string, number>;
}

/** µs per stage (receive, plan, diff, apply, host, report) since the previous convergence. */
export type StageRecord = Readonly<Record<string, number>>;

export class Daemon {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly log: FileLines;
  private stderr = '';
  private wakeups: Array<() => void> = [];
  /** durationSeconds of each convergence record, in order: the daemon's own latency figure. */
  readonly durations: number[] = [];
  /** The stages of each convergence record (same index as durations; empty from builds without them). */
  readonly stages: StageRecord[] = [];
  /** Log lines at warn (40) or above, as the daemon wrote them. */
  readonly complaints: string[] = [];
  /** Realtime ms at spawn, and the time of the "running" record (pino's, ms resolution). */
  readonly spawnedAt = performance.timeOrigin + performance.now();
  runningAt: number | undefined;

  /** `cli`: another build's dist/cli.js (for an A/B of two builds). */
  constructor(ns: string, configPath: string, logPath: string, nodeArgs: readonly string[] = [], cli = CLI) {
    const log = openSync(logPath, 'w');
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...nodeArgs, cli, 'run', '--config', configPath], {
      stdio: ['ignore', log, 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: undefined, WATCHDOG_USEC: undefined },
    });
    closeSync(log);
    this.log = new FileLines(logPath, (lines) => {
      for (const line of lines) this.record(line);
      for (const wake of this.wakeups.splice(0)) wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.exited.then(() => {
      this.log.close();
      this.wakeups.splice(0).forEach((wake) => wake());
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  private record(line: string): void {
    if (!line.startsWith('{')) return;
    const record = JSON.parse(line) as LogRecord;
    if (typeof record.durationSeconds === 'number') {
      this.durations.push(record.durationSeconds);
      this.stages.push(record.stageMicros ?? {});
    }
    if (record.level >= 40) this.complaints.push(record.msg);
    if (this.runningAt === undefined && record.msg.startsWith('running')) this.runningAt = new Date(record.time).getTime();
  }

  /** Waits until `condition()` holds, re-checking after each chunk of log. */
  async until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`daemon exited while waiting for ${what}: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`daemon: no ${what} within ${timeoutMs} ms`);
      this.log.read(); // in case a change notification was coalesced away
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.wakeups.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  running(timeoutMs?: number): Promise<void> {
    return this.until(() => this.runningAt !== undefined, 'start-up convergence', timeoutMs);
  }

  /** The duration of the convergence after the first `count` ones. */
  async convergence(count: number, timeoutMs?: number): Promise<number> {
    await this.until(() => this.durations.length > count, `convergence #${count + 1}`, timeoutMs);
    return this.durations[count]!;
  }

  /** Resident and peak resident memory in MiB. */
  memory(): { rss: number; peak: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
    return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }
}

/**
 * How often the threads of `pid` were put on a CPU and for how long, summed over threads
 * (/proc/<pid>/task/<tid>/schedstat: run time ns, wait time ns, timeslices). A thread that
 * sleeps until woken gets one timeslice per wake-up.
 */
export function scheduling(pid: number): { wakeups: number; cpuMs: number } {
  let wakeups = 0;
  let cpuNs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const [run, , slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
      cpuNs += run!;
      wakeups += slices!;
    } catch {
      // a thread that ended between readdir and read
    }
  }
  return { wakeups, cpuMs: cpuNs / 1e6 };
}

/** CPU time (ms) of one thread, by default the main thread, from its schedstat. */
export function threadCpuMs(pid: number, tid = pid): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}
