// What the command line needs to know about the config without loading its parser (yaml and
// zod are most of symroute's start-up time): where the file is, which log levels and formats exist.
export const DEFAULT_CONFIG_PATH = '/etc/symroute/symroute.yaml';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['text', 'json'] as const;

export type LogFormat = (typeof LOG_FORMATS)[number];
