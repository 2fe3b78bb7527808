import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** JSON lines on stdout; no pretty-printer in production. */
export function createLogger(level: LogLevel): Logger {
  return pino({ name: 'symroute', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
