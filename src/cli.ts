#!/usr/bin/env node
// symroute's command line. `run` is the daemon; every command exits 2 on a bad config.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, LOG_LEVELS, type Config, type LogLevel } from './config.js';
import { runService } from './service.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `Usage: symroute <command> [options]

Commands:
  run [--config FILE] [--once] [--log-level LEVEL]
      Keep one routing table per managed interface and "from" rules into it converged.
      --once converges, then exits (0 when in sync, 1 when it could not get there).

Options:
  --config FILE   config file (default /etc/symroute/symroute.yaml; missing means defaults)
  --help          this text
  --version       print the version
`;

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2; // bad arguments or bad config: nothing was changed

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version') return print(VERSION);
  if (command === undefined || command === '--help' || command === 'help') return print(USAGE);
  if (command !== 'run') return usageError(`unknown command ${JSON.stringify(command)}`);
  let options;
  try {
    options = parseArgs({
      args: rest,
      options: {
        config: { type: 'string' },
        once: { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    return usageError((error as Error).message);
  }
  if (options.help) return print(USAGE);
  const logLevel = options['log-level'];
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as LogLevel)) {
    return usageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  let config: Config;
  try {
    config = loadConfig(options.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`symroute: invalid config:\n${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
  return runService({
    configPath: options.config,
    config,
    once: options.once,
    logLevel: logLevel as LogLevel | undefined,
    version: VERSION,
  });
}

function print(text: string): number {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  return EXIT_OK;
}

function usageError(message: string): number {
  process.stderr.write(`symroute: ${message}\n\n${USAGE}`);
  return EXIT_USAGE;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`symroute: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
