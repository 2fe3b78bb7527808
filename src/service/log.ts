import { fstatSync } from 'node:fs';
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
 * each line starts with `<priority>` so the journal keeps levels.
 */
export function createLogger(level: LogLevel, format: LogFormat | undefined, env: NodeJS.ProcessEnv = process.env): Logger {
  const options = { name: 'symroute', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  const text = (format ?? (process.stdout.isTTY ? 'text' : 'json')) === 'text';
  const journal = stdoutIsJournal(env);
  if (!text && !journal) return pino(options, pino.destination({ fd: 1, sync: true }));
  return pino(options, {
    write(line: string): void {
      const level = /"level":(\d+)/.exec(line)?.[1] ?? '30';
      const prefix = journal ? `<${SYSLOG_PRIORITY[level] ?? 6}>` : '';
      process.stdout.write(prefix + (text ? textLine(line, level) : line));
    },
  } satisfies DestinationStream);
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
