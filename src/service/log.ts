import { fstatSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config/config.js';

export type { Logger };

// pino's numeric levels -> syslog priorities: fatal 2 (crit), error 3, warn 4, info 6, debug and trace 7.
const SYSLOG_PRIORITY: Record<string, number> = { '60': 2, '50': 3, '40': 4, '30': 6, '20': 7, '10': 7 };

/**
 * JSON lines on stdout; no pretty-printer in production. When stdout is journald's stream
 * (JOURNAL_STREAM names it), each line starts with `<priority>` so the journal keeps levels.
 */
export function createLogger(level: LogLevel, env: NodeJS.ProcessEnv = process.env): Logger {
  const options = { name: 'symroute', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  return pino(options, stdoutIsJournal(env) ? journalDestination() : pino.destination({ fd: 1, sync: true }));
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

function journalDestination(): DestinationStream {
  return {
    write(line: string): void {
      const level = /"level":(\d+)/.exec(line)?.[1] ?? '30';
      process.stdout.write(`<${SYSLOG_PRIORITY[level] ?? 6}>${line}`);
    },
  };
}
