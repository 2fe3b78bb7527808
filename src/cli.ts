#!/usr/bin/env node
// symroute's command line: parses arguments and hands over to one command. What each command
// says about itself (--help, man page, exit codes) is written once, in manual.ts.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readBuildInfo } from './build.js';
import type { Output } from './commands/inspect.js';
import type { Config } from './config/config.js';
import { DEFAULT_CONFIG_PATH, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './config/defaults.js';
import { commandHelp, completionScript, mainHelp, SHELLS, type Shell } from './manual.js';

// Each command imports what it needs when it runs (await import), so `--help` or
// `check-config` never pays for the netlink addon, pino or prom-client: start-up time is
// mostly module loading.

// Named after itself, not the interpreter: ps, top and the journal's _COMM show "symroute".
process.title = 'symroute';

const BUILD = readBuildInfo();
const EXIT_USAGE = 2;

const io: Output = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

type Values = Record<string, string | boolean | undefined>;

/** How a command parses and runs; what it says about itself is in manual.ts. */
interface Command {
  readonly options: NonNullable<ParseArgsConfig['options']>;
  readonly positionals: [min: number, max: number];
  run(values: Values, positionals: string[]): Promise<number>;
}

const CONFIG_OPTION = { config: { type: 'string' } } as const;
const JSON_OPTION = { json: { type: 'boolean' } } as const;

const COMMANDS: Record<string, Command> = {
  run: {
    options: {
      ...CONFIG_OPTION,
      once: { type: 'boolean' },
      'watch-config': { type: 'boolean' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
    },
    positionals: [0, 0],
    async run(values) {
      // First of all, before the rest is loaded: a stop during start-up stops it cleanly.
      const { catchStopSignals } = await import('./stop-signal.js');
      const stopRequested = catchStopSignals();
      const logLevel = values['log-level'] as string | undefined;
      if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as LogLevel)) {
        return usageError('run', `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
      }
      if (values.once && values['watch-config']) return usageError('run', '--once and --watch-config exclude each other');
      const logFormat = values['log-format'] as string | undefined;
      if (logFormat !== undefined && !LOG_FORMATS.includes(logFormat as LogFormat)) {
        return usageError('run', `--log-format: expected one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(logFormat)}`);
      }
      const configPath = values.config as string | undefined;
      const { runService } = await import('./service/service.js');
      return withConfig(configPath, (config) =>
        runService({
          configPath,
          config,
          once: values.once === true,
          watchConfig: values['watch-config'] === true,
          logLevel: logLevel as LogLevel | undefined,
          logFormat: logFormat as LogFormat | undefined,
          build: BUILD,
          stopRequested,
        }),
      );
    },
  },
  reload: {
    options: {},
    positionals: [0, 0],
    async run() {
      const { reloadCommand } = await import('./commands/reload.js');
      return reloadCommand(io);
    },
  },
  plan: {
    options: { ...CONFIG_OPTION, ...JSON_OPTION },
    positionals: [0, 0],
    async run(values) {
      const { planCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => planCommand(config, values.json === true, io));
    },
  },
  status: {
    options: { ...CONFIG_OPTION, ...JSON_OPTION },
    positionals: [0, 0],
    async run(values) {
      const { statusCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => statusCommand(config, values.json === true, io));
    },
  },
  explain: {
    options: { ...CONFIG_OPTION, ...JSON_OPTION, from: { type: 'string' } },
    positionals: [1, 1],
    async run(values, [dst]) {
      if (typeof values.from !== 'string') return usageError('explain', '--from SRC is required');
      const { explainCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) =>
        explainCommand(config, dst!, values.from as string, values.json === true, io),
      );
    },
  },
  verify: {
    options: { ...CONFIG_OPTION, ...JSON_OPTION },
    positionals: [0, 0],
    async run(values) {
      const { verifyCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => verifyCommand(config, values.json === true, io));
    },
  },
  'check-config': {
    options: {},
    positionals: [0, 1],
    async run(_values, [file]) {
      return withConfig(file ?? DEFAULT_CONFIG_PATH, async () => {
        io.out(`${file ?? DEFAULT_CONFIG_PATH}: OK`);
        return 0;
      });
    },
  },
  demo: {
    options: { nics: { type: 'string' } },
    positionals: [0, 0],
    async run(values) {
      const nics = values.nics === undefined ? 8 : Number(values.nics);
      if (!Number.isInteger(nics) || nics < 1 || nics > 200) {
        return usageError('demo', `--nics: expected an integer 1..200, got ${JSON.stringify(values.nics)}`);
      }
      const { demoCommand } = await import('./commands/demo.js');
      return demoCommand(nics, io);
    },
  },
  completion: {
    options: {},
    positionals: [1, 1],
    async run(_values, [shell]) {
      if (!SHELLS.includes(shell as Shell)) {
        return usageError('completion', `expected one of ${SHELLS.join(', ')}, got ${JSON.stringify(shell)}`);
      }
      process.stdout.write(completionScript(shell as Shell));
      return 0;
    },
  },
};

async function withConfig(path: string | undefined, use: (config: Config) => Promise<number>): Promise<number> {
  const { ConfigError, loadConfig } = await import('./config/config.js');
  let config: Config;
  try {
    config = loadConfig(path);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.err(`symroute: invalid config:\n${error.message}`);
    return EXIT_USAGE;
  }
  return use(config);
}

function usageError(command: string | undefined, message: string): number {
  io.err(`symroute${command ? ` ${command}` : ''}: ${message}\n`);
  io.err(command ? commandHelp(command) : mainHelp());
  return EXIT_USAGE;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') return (io.out(BUILD.version), 0);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) return usageError(undefined, `unknown command ${JSON.stringify(name)}`);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return usageError(name, (error as Error).message);
  }
  if (parsed.values.help) {
    process.stdout.write(commandHelp(name));
    return 0;
  }
  const [min, max] = command.positionals;
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    return usageError(name, `expected ${min === max ? min : `${min} to ${max}`} arguments, got ${parsed.positionals.length}`);
  }
  return command.run(parsed.values as Values, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // A config the kernel's state refuses (a priority someone else uses) is a bad config too.
    // (By name: config.js is loaded only by the commands that read a config.)
    if (error instanceof Error && error.name === 'ConfigError') {
      process.stderr.write(`symroute: config refused:\n${error.message}\n`);
      process.exitCode = EXIT_USAGE;
      return;
    }
    process.stderr.write(`symroute: ${(error as Error).message ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
