#!/usr/bin/env node
// symroute's command line: parses arguments and hands over to one command. Exit codes:
// 0 ok / in sync, 1 failed / changes pending, 2 bad usage or bad config (nothing changed).
// First of all imports: `run` handles SIGTERM/SIGINT before anything else is loaded.
import './service/stop-signal.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readBuildInfo } from './build.js';
import type { Output } from './commands/inspect.js';
import type { Config } from './config/config.js';
import { DEFAULT_CONFIG_PATH, LOG_LEVELS, type LogLevel } from './config/defaults.js';

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

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly details: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  readonly positionals: [min: number, max: number];
  run(values: Values, positionals: string[]): Promise<number>;
}

const CONFIG_OPTION = { config: { type: 'string' } } as const;
const CONFIG_HELP = `  --config FILE   config file (default ${DEFAULT_CONFIG_PATH}; if that is missing, all defaults)`;

const COMMANDS: Record<string, Command> = {
  run: {
    summary: 'keep per-NIC tables and "from" rules converged (the daemon)',
    usage: 'symroute run [--config FILE] [--once | --watch-config] [--log-level LEVEL]',
    details: `${CONFIG_HELP}
  --once          converge, then exit: 0 when in sync, 1 when a change failed
  --watch-config  reload whenever the config file changes (edited, replaced, or a
                  Kubernetes ConfigMap update), exactly as on SIGHUP
  --log-level L   ${LOG_LEVELS.join(', ')} (overrides log.level)

Signals: SIGHUP reloads the config; SIGTERM/SIGINT stop, leaving rules and routes in place
unless on_exit: remove. Metrics on metrics.listen (default 127.0.0.1:9477).`,
    options: { ...CONFIG_OPTION, once: { type: 'boolean' }, 'watch-config': { type: 'boolean' }, 'log-level': { type: 'string' } },
    positionals: [0, 0],
    async run(values) {
      const logLevel = values['log-level'] as string | undefined;
      if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as LogLevel)) {
        return usageError('run', `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
      }
      if (values.once && values['watch-config']) return usageError('run', '--once and --watch-config exclude each other');
      const configPath = values.config as string | undefined;
      const { runService } = await import('./service/service.js');
      return withConfig(configPath, (config) =>
        runService({
          configPath,
          config,
          once: values.once === true,
          watchConfig: values['watch-config'] === true,
          logLevel: logLevel as LogLevel | undefined,
          build: BUILD,
        }),
      );
    },
  },
  plan: {
    summary: 'show what run would change now, as +/- lines (exit 1 if anything)',
    usage: 'symroute plan [--config FILE]',
    details: `${CONFIG_HELP}

Read-only. Prints ip-style lines: "+" would be added, "-" removed. Exit 0 when in sync,
1 when changes are pending.`,
    options: CONFIG_OPTION,
    positionals: [0, 0],
    async run(values) {
      const { planCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => planCommand(config, io));
    },
  },
  status: {
    summary: 'per managed interface: addresses, table, gateway, rules, in sync or not',
    usage: 'symroute status [--config FILE] [--json]',
    details: `${CONFIG_HELP}
  --json          machine-readable output

Read-only. Also lists collisions and misconfigurations. Exit 0 when in sync, 1 when not.`,
    options: { ...CONFIG_OPTION, json: { type: 'boolean' } },
    positionals: [0, 0],
    async run(values) {
      const { statusCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => statusCommand(config, values.json === true, io));
    },
  },
  'check-config': {
    summary: 'validate a config file and exit (2 if it has errors)',
    usage: `symroute check-config [FILE]`,
    details: `  FILE            the config to check (default ${DEFAULT_CONFIG_PATH})

Prints every problem as file:line: key: message. Exit 0 if valid, 2 if not.`,
    options: {},
    positionals: [0, 1],
    async run(_values, [file]) {
      return withConfig(file ?? DEFAULT_CONFIG_PATH, async () => {
        io.out(`${file ?? DEFAULT_CONFIG_PATH}: OK`);
        return 0;
      });
    },
  },
  explain: {
    summary: 'ask the kernel how a reply from SRC to DST is routed, and whether that is right',
    usage: 'symroute explain DST --from SRC [--config FILE]',
    details: `${CONFIG_HELP}

Like "ip route get DST from SRC": names the rule, table, device and gateway the reply would
use, and says whether it leaves through the NIC that owns SRC. Exit 0 if it does, 1 if not.`,
    options: { ...CONFIG_OPTION, from: { type: 'string' } },
    positionals: [1, 1],
    async run(values, [dst]) {
      if (typeof values.from !== 'string') return usageError('explain', '--from SRC is required');
      const { explainCommand } = await import('./commands/inspect.js');
      return withConfig(values.config as string | undefined, (config) => explainCommand(config, dst!, values.from as string, io));
    },
  },
  demo: {
    summary: 'show the problem and the fix in private network namespaces (needs root)',
    usage: 'symroute demo [--nics N]',
    details: `  --nics N        NICs on the multi-NIC host (default 8, at most 200)

Builds Case 2 (many NICs in one subnet, strict rp_filter) in network namespaces, shows
reachability before and after starting symroute there, hot-adds a NIC and reports how long
symroute took to converge, then removes everything it created.`,
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
};

function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: symroute <command> [options]

Keeps one routing table per NIC and "from" rules into it, so replies leave through the NIC
the request came in on.

Commands:
${lines.join('\n')}

Run "symroute <command> --help" for a command's options. "symroute --version" prints the version.
`;
}

function commandUsage(name: string): string {
  const c = COMMANDS[name]!;
  return `Usage: ${c.usage}\n\n${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.\n\n${c.details}\n`;
}

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
  io.err(command ? commandUsage(command) : mainUsage());
  return EXIT_USAGE;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') return (io.out(BUILD.version), 0);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainUsage());
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
    process.stdout.write(commandUsage(name));
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
    process.stderr.write(`symroute: ${(error as Error).message ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
