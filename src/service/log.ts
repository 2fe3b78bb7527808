import { fstatSync, writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config/config.js';
import type { LogFormat } from '../config/defaults.js';

export type { Logger };

// pino's numeric levels -> syslog priorities: fatal 2 (crit), error 3, warn 4, info 6, debug and trace 7.
const SYSLOG_PRIORITY: Record<string, number> = { '60': 2, '50': 3, '40': 4, '30': 6, '20': 7, '10': 7 };
const LEVEL_NAMES: Record<string, string> = { '60': 'FATAL', '50': 'ERROR', '40': 'WARN', '30': 'INFO', '20': 'DEBUG', '10': 'TRACE' };
/** Fields every record has, which the text format shows in its own way or not at all. */
const FRAMING = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/**
 * Lines on stdout: JSON (pino) for machines, or text for people — by default text on a
 * terminal, JSON otherwise. When stdout is journald's stream (JOURNAL_STREAM names it),
 * each line starts with `<priority>` so the journal keeps levels. Lines are written after
 * the code that logged them (see DeferredLines), never in the middle of a pass.
 */
export function createLogger(level: LogLevel, format: LogFormat | undefined, env: NodeJS.ProcessEnv = process.env, fd = 1): Logger {
  const options = { name: 'symroute', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  const text = (format ?? (process.stdout.isTTY ? 'text' : 'json')) === 'text';
  const journal = stdoutIsJournal(env);
  const lines = new DeferredLines(fd);
  if (!text && !journal) return pino(options, lines);
  return pino(options, {
    write(line: string): void {
      const level = /"level":(\d+)/.exec(line)?.[1] ?? '30';
      const prefix = journal ? `<${SYSLOG_PRIORITY[level] ?? 6}>` : '';
      lines.write(prefix + (text ? textLine(line, level) : line));
    },
  } satisfies DestinationStream);
}

/** How much text one turn gathers before it is written at once (a few hundred lines). */
const CHUNK_CHARS = 64 * 1024;
/** How long a write at exit waits out a full pipe (a stalled journald) before giving up on the rest. */
const EXIT_FLUSH_PATIENCE_MS = 5000;

/**
 * Log lines written once the code that logged them has run: what one turn of the event loop
 * logged (a pass's change and "converged" lines) goes out in one write(2) at the next turn,
 * instead of one synchronous write per line inside the pass (pino's sync destination: ~70 µs
 * a line, the top self item of a convergence's report). Not pino's asynchronous destination
 * (sonic-boom, sync: false): its write runs on libuv's thread pool, and one still under way
 * at exit is lost or overtaken by the synchronous flush. Here everything stays on the main
 * thread, in order, and whatever is still waiting is written synchronously at exit — a stop,
 * a reload's failure, an error, an uncaught exception: every way out but SIGKILL, which loses
 * at most the lines of the turn it struck. A full non-blocking stdout (EAGAIN) is waited out
 * on a timer rather than spun on; a blocking one (journald's stream socket) blocks as before.
 */
export class DeferredLines implements DestinationStream {
  private pending = '';
  /** What a write left over (a full pipe takes part of it), already encoded: written first. */
  private unwritten: Buffer | null = null;
  private scheduled = false;
  /** The reader went away (EPIPE): nobody can read what is logged from now on. */
  private closed = false;

  constructor(private readonly fd: number) {
    process.on('exit', () => this.flushSync(EXIT_FLUSH_PATIENCE_MS));
  }

  write(line: string): void {
    if (this.closed) return;
    this.pending += line;
    // Thousands of lines in one turn (a cold start's changes) go out a chunk at a time:
    // lines held until the turn ends would outlive a young-generation collection or two.
    if (this.pending.length >= CHUNK_CHARS && this.unwritten === null && this.flushSync()) return;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Writes what is waiting now; true when all of it was written. */
  flushSync(patienceMs = 0): boolean {
    const deadline = Date.now() + patienceMs;
    while ((this.unwritten !== null || this.pending.length > 0) && !this.closed) {
      if (!this.writeSome() && Date.now() >= deadline) return false;
    }
    return true;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.flushSync()) return;
    this.scheduled = true;
    setTimeout(() => this.flush(), 10); // the pipe is full: its reader gets a moment
  }

  /** One write(2) of what is waiting; false when the pipe was full. */
  private writeSome(): boolean {
    if (this.unwritten === null) {
      this.unwritten = Buffer.from(this.pending);
      this.pending = '';
    }
    let written: number;
    try {
      written = writeSync(this.fd, this.unwritten);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') return false;
      if (code !== 'EPIPE') throw error;
      this.closed = true;
      this.pending = '';
      this.unwritten = null;
      return true;
    }
    this.unwritten = written === this.unwritten.length ? null : this.unwritten.subarray(written);
    return true;
  }
}

/** `2026-11-29T14:00:00.000Z INFO  added rule … ifname=eth1 errno=ENETUNREACH` */
function textLine(json: string, level: string): string {
  const record = JSON.parse(json) as Record<string, unknown>;
  const fields = Object.entries(record)
    .filter(([key]) => !FRAMING.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const levelName = (LEVEL_NAMES[level] ?? level).padEnd(5);
  return `${record.time as string} ${levelName} ${record.msg as string}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

function stdoutIsJournal(env: NodeJS.ProcessEnv): boolean {
  const [device, inode] = (env.JOURNAL_STREAM ?? '').split(':');
  if (!device || !inode) return false;
  try {
    const stdout = fstatSync(1);
    return String(stdout.dev) === device && String(stdout.ino) === inode;
  } catch {
    return false;
  }
}
