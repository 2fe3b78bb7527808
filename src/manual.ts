// symroute's manual, written once: each command's usage, options and description, the exit
// codes and the annotated config reference. `--help` prints it, the man pages symroute(8)
// and symroute.yaml(5), the shell completions and the default /etc/symroute/symroute.yaml
// are generated from it, and a test checks that the README quotes it word for word.
// Plain data and string formatting only, so `--help` loads nothing else.

import { DEFAULT_CONFIG_PATH as CONFIG_PATH, LOG_FORMATS, LOG_LEVELS } from './config/defaults.js';

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

export const SUMMARY = 'per-NIC routing tables and source rules, kept converged';
export const DESCRIPTION =
  'Keeps one routing table per NIC and "from" rules into it, so replies leave through the NIC the request came in on.';

export interface OptionDoc {
  /** As typed, with its argument: `--config FILE`. */
  readonly flag: string;
  readonly text: string;
  /** Values the shell completions offer for the argument. */
  readonly values?: readonly string[] | 'file';
}

export interface CommandDoc {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  /** Positional arguments (documented like options). */
  readonly operands?: readonly OptionDoc[];
  readonly options: readonly OptionDoc[];
  /** Paragraphs, separated by blank lines; wrapped by whoever prints them. */
  readonly description: string;
}

const CONFIG_OPTION: OptionDoc = {
  flag: '--config FILE',
  text: `config file (default ${CONFIG_PATH}; if that is missing, all defaults)`,
  values: 'file',
};
const JSON_OPTION: OptionDoc = {
  flag: '--json',
  text: 'print one JSON object instead of text (stable: fields are only ever added)',
};

export const COMMANDS: readonly CommandDoc[] = [
  {
    name: 'run',
    summary: 'keep per-NIC tables and "from" rules converged (the daemon)',
    usage: 'symroute run [--config FILE] [--once | --watch-config] [--log-level LEVEL] [--log-format FORMAT]',
    options: [
      CONFIG_OPTION,
      { flag: '--once', text: 'converge, then exit: 0 when in sync, 1 when a change failed' },
      {
        flag: '--watch-config',
        text: 'reload whenever the config file changes (edited, replaced, or a Kubernetes ConfigMap update), exactly as on SIGHUP',
      },
      { flag: '--log-level LEVEL', text: `${LOG_LEVELS.join(', ')} (overrides log.level)`, values: LOG_LEVELS },
      {
        flag: '--log-format FORMAT',
        text: 'text (one readable line per event; the default on a terminal) or json (JSON lines; the default otherwise)',
        values: LOG_FORMATS,
      },
    ],
    description: `Signals: SIGHUP reloads the config (as "symroute reload" does); SIGTERM and SIGINT stop, leaving rules and routes in place unless on_exit: remove, also during start-up. Metrics on metrics.listen (default 127.0.0.1:9477). One symroute per network namespace: a second run exits 1, naming the first's pid.`,
  },
  {
    name: 'reload',
    summary: 'make the running daemon re-read its config, and say whether it was applied',
    usage: 'symroute reload',
    options: [],
    description: `Asks the symroute running in this network namespace (over its control socket, $RUNTIME_DIRECTORY/net-<inode>.sock or /run/symroute/net-<inode>.sock) to re-read its config file, exactly as SIGHUP does, waits until the new config is applied or rejected, and prints the verdict; each problem of a rejected config as file:line: key: message. Exit 0 when applied, 1 when rejected (the daemon keeps its running config), 3 when no symroute runs in this network namespace.`,
  },
  {
    name: 'plan',
    summary: 'show what run would change now (exit 1 if anything)',
    usage: 'symroute plan [--config FILE] [--json]',
    options: [CONFIG_OPTION, JSON_OPTION],
    description: `Read-only. Prints ip-style lines: "+" would be added, "-" removed. Exit 0 when in sync, 1 when changes are pending.`,
  },
  {
    name: 'status',
    summary: 'per managed interface: addresses, table, gateway, rules, in sync or not',
    usage: 'symroute status [--config FILE] [--json]',
    options: [CONFIG_OPTION, JSON_OPTION],
    description: 'Read-only. Also lists collisions and misconfigurations. Exit 0 when in sync, 1 when not.',
  },
  {
    name: 'explain',
    summary: 'ask the kernel how a reply from SRC to DST is routed, and whether that is right',
    usage: 'symroute explain DST --from SRC [--config FILE] [--json]',
    operands: [{ flag: 'DST', text: 'the address the reply goes to' }],
    options: [{ flag: '--from SRC', text: 'the local address the reply comes from (required)' }, CONFIG_OPTION, JSON_OPTION],
    description: `Like "ip route get DST from SRC": names the rule, table, device and gateway the reply would use, and says whether it leaves through the NIC that owns SRC. Exit 0 if it does, 1 if not.`,
  },
  {
    name: 'verify',
    summary: "ask the kernel whether every managed address's replies leave through its NIC",
    usage: 'symroute verify [--config FILE] [--json]',
    options: [CONFIG_OPTION, JSON_OPTION],
    description: `Read-only; works with or without a running daemon. For each managed address, asks the kernel (as "ip route get") how a reply to a neighbour in its prefix, and to an off-link destination when its NIC has a gateway, would leave, and whether a request from that neighbour arriving on the NIC would be accepted (rp_filter). Prints each path with its verdict, and for a broken one the reason, the device the reply would leave by and the rule and table that took it. Also lists the ARP settings of NICs sharing an IPv4 subnet that let requests for one NIC's addresses arrive on another (no lookup can see that). Exit 0 when every path holds and no such setting is found, 1 otherwise.`,
  },
  {
    name: 'check-config',
    summary: 'validate a config file and exit (2 if it has errors)',
    usage: 'symroute check-config [FILE]',
    operands: [{ flag: 'FILE', text: `the config to check (default ${CONFIG_PATH})`, values: 'file' }],
    options: [],
    description: 'Prints every problem as file:line: key: message. Exit 0 if valid, 2 if not.',
  },
  {
    name: 'demo',
    summary: 'show the problem and the fix in private network namespaces (needs root)',
    usage: 'symroute demo [--nics N]',
    options: [{ flag: '--nics N', text: 'NICs on the multi-NIC host (default 8, at most 200)' }],
    description: `Builds Case 2 (many NICs in one subnet, strict rp_filter) in network namespaces, shows reachability before and after starting symroute there, hot-adds a NIC and reports how long symroute took to converge, then removes everything it created.`,
  },
  {
    name: 'completion',
    summary: 'print the shell completion script for bash or zsh',
    usage: 'symroute completion SHELL',
    operands: [{ flag: 'SHELL', text: SHELLS.join(' or '), values: SHELLS }],
    options: [],
    description: `bash: save as /usr/share/bash-completion/completions/symroute. zsh: save as _symroute in a directory of $fpath. The .deb installs both.`,
  },
];

/** Exit codes, the same for every command (each command's description says which apply). */
export const EXIT_CODES: readonly { code: number; meaning: string }[] = [
  { code: 0, meaning: 'success: in sync, config valid, reload applied, reply leaves through the right NIC, every reply path holds' },
  { code: 1, meaning: 'not so: changes pending or failed, reload rejected, reply leaves through another NIC, a reply path is broken; or an unexpected error' },
  { code: 2, meaning: 'bad usage or invalid config; nothing was changed' },
  { code: 3, meaning: 'reload: no symroute daemon is running in this network namespace' },
];

/**
 * The config reference: every key with its default, as the README shows it. symroute.yaml(5)
 * prints it and the packaged /etc/symroute/symroute.yaml is this, commented out.
 */
export const CONFIG_REFERENCE = `interfaces:
  include: ["*"]            # globs: * ? [a-z] [!x]
  exclude: ["docker*", "veth*", "br-*", "virbr*", "cni*", "cali*", "flannel*", "tun*", "tap*", …]
                            # setting exclude replaces the default list
table:
  base: 1000                # table = base + ifindex
  pinned:                   # ifname -> table id (1..2^32-1, not 253/254/255)
    eth1: 101
rule:
  priority: 30000           # 6..32603 (symroute's rules take P-5 .. P+162)
  match: address            # address: from <addr>/32   prefix: from <subnet>
gateways:
  eth1:
    ipv4: 198.51.100.1
    ipv6: fe80::1
exceptions: []             # prefixes always routed by main, whatever the source, e.g.
                            # ["169.254.169.254/32", "168.63.129.16/32"] (see below)
container_routes: true      # to <prefix> lookup main for main's routes through excluded devices
sysctl: report              # report | manage (set arp_ignore=1, arp_announce=2 on shared-subnet NICs)
iproute2_dir: auto          # where rt_tables.d/ and rt_protos.d/ get symroute's names, or false;
                            # auto, only in the host's network namespace: $RUNTIME_DIRECTORY/iproute2
                            # under systemd, else /etc/iproute2
protocol: 83                # rtm_protocol / FRA_PROTOCOL marking symroute's objects (5..255)
on_exit: keep               # keep | remove (delete everything symroute owns on SIGTERM/SIGINT)
log:
  level: info               # fatal error warn info debug trace
metrics:
  listen: 127.0.0.1:9477    # "[::1]:9477", or false for no HTTP endpoint
verify:
  interval: 60              # seconds between sweeps of every reply path (symroute verify),
                            # or false; paths a pass touched are verified after it anyway
`;

export const CONFIG_INTRO = `YAML, default ${CONFIG_PATH}; no file means all defaults. Every key is optional.`;
export const CONFIG_ERRORS = `A bad config is rejected whole, every problem at once, each naming file, line and key; the process exits with status 2 and changes nothing. "symroute check-config" checks a file without running; "symroute reload" (systemctl reload symroute) applies a changed one to the running daemon, or reports why it was rejected.`;

// ---------------------------------------------------------------------------------------------
// Text for the terminal

const wrap = (text: string, width: number, indent = ''): string[] => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines;
};

const optionLines = (options: readonly OptionDoc[]): string[] => {
  const width = Math.max(14, ...options.map((o) => o.flag.length));
  return options.flatMap((o) => {
    const [first, ...rest] = wrap(o.text, 90 - width - 4);
    return [`  ${o.flag.padEnd(width)}  ${first}`, ...rest.map((l) => `  ${''.padEnd(width)}  ${l}`)];
  });
};

export function commandDoc(name: string): CommandDoc | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** `symroute <command> --help`. */
export function commandHelp(name: string): string {
  const c = commandDoc(name)!;
  const options = [...(c.operands ?? []), ...c.options];
  return [
    `Usage: ${c.usage}`,
    '',
    `${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.`,
    ...(options.length ? ['', ...optionLines(options)] : []),
    '',
    ...c.description.split('\n\n').flatMap((p, i) => [...(i ? [''] : []), ...wrap(p, 92)]),
    '',
  ].join('\n');
}

/** `symroute --help`. */
export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: symroute <command> [options]',
    '',
    ...wrap(DESCRIPTION, 92),
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Exit codes:',
    ...EXIT_CODES.flatMap((e) => {
      const [first, ...rest] = wrap(e.meaning, 86);
      return [`  ${e.code}  ${first}`, ...rest.map((line) => `     ${line}`)];
    }),
    '',
    'Run "symroute <command> --help" for a command\'s options. "symroute --version" prints the version.',
    '',
  ].join('\n');
}

/** The README's exit-code list, which a test compares with the README. */
export function exitCodesMarkdown(): string {
  return EXIT_CODES.map((e) => `* \`${e.code}\` ${e.meaning}`).join('\n');
}

/** The packaged /etc/symroute/symroute.yaml: the reference, commented out. */
export function defaultConfigFile(): string {
  const header = [
    `# symroute configuration. Every key is optional: with everything commented out (or this`,
    `# file removed) symroute runs on the defaults shown. See symroute.yaml(5).`,
    `# Check a change with "symroute check-config", apply it with "systemctl reload symroute".`,
    '#',
  ];
  const body = CONFIG_REFERENCE.replace(/, …\]/, ', ...]')
    .trimEnd()
    .split('\n')
    .map((line) => `#${line ? ` ${line}` : ''}`);
  return [...header, ...body, ''].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Man pages (roff, man(7) macros)

/** Escapes text for roff: backslashes, hyphens in options, and lines starting with . or '. */
const roff = (text: string): string =>
  text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/…/g, '...')
    .split('\n')
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');

const bold = (text: string) => `\\fB${roff(text)}\\fR`;

function manOption(option: OptionDoc): string {
  const [flag, ...argument] = option.flag.split(' ');
  const head = argument.length ? `${bold(flag!)} \\fI${roff(argument.join(' '))}\\fR` : bold(flag!);
  return `.TP\n${head}\n${roff(option.text)}`;
}

export type ManPageName = 'symroute.8' | 'symroute.yaml.5';
export const MAN_PAGES: readonly ManPageName[] = ['symroute.8', 'symroute.yaml.5'];

export function manPage(name: ManPageName, version: string): string {
  return name === 'symroute.8' ? symroute8(version) : symrouteYaml5(version);
}

function symroute8(version: string): string {
  const commands = COMMANDS.map((c) =>
    [
      `.SS ${bold(c.name)}`,
      `.B ${roff(c.usage)}`,
      '.br',
      `${roff(c.summary[0]!.toUpperCase() + c.summary.slice(1))}.`,
      ...[...(c.operands ?? []), ...c.options].map(manOption),
      '.PP',
      ...c.description.split('\n\n').map((p, i) => (i ? `.PP\n${roff(p)}` : roff(p))),
    ].join('\n'),
  );
  return [
    `.TH SYMROUTE 8 "" "symroute ${version}" "System Administration"`,
    '.SH NAME',
    `symroute \\- ${roff(SUMMARY)}`,
    '.SH SYNOPSIS',
    '.B symroute',
    '.I command',
    '[\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    roff(DESCRIPTION),
    '.PP',
    roff(
      'For every managed interface with a usable address, per family: a table (table.base + ifindex) holding the interface\'s connected prefixes and its gateway, and a rule "from <address> lookup <table>". Everything symroute installs carries its protocol number, and only such objects are ever changed or deleted.',
    ),
    '.SH COMMANDS',
    ...commands,
    '.SH EXIT STATUS',
    ...EXIT_CODES.map((e) => `.TP\n.B ${e.code}\n${roff(e.meaning)}`),
    '.SH FILES',
    `.TP\n.I ${roff(CONFIG_PATH)}\nThe configuration; see \\fBsymroute.yaml\\fR(5).`,
    '.SH SEE ALSO',
    '\\fBsymroute.yaml\\fR(5), \\fBip\\-rule\\fR(8), \\fBip\\-route\\fR(8), \\fBsystemctl\\fR(1)',
    '',
  ].join('\n');
}

function symrouteYaml5(version: string): string {
  return [
    `.TH SYMROUTE.YAML 5 "" "symroute ${version}" "File Formats"`,
    '.SH NAME',
    'symroute.yaml \\- configuration of symroute',
    '.SH SYNOPSIS',
    `.I ${roff(CONFIG_PATH)}`,
    '.SH DESCRIPTION',
    roff(CONFIG_INTRO),
    'Every key, with its default:',
    '.PP',
    '.nf',
    '.RS 4',
    roff(CONFIG_REFERENCE.trimEnd()),
    '.RE',
    '.fi',
    '.PP',
    roff(CONFIG_ERRORS),
    '.SH SEE ALSO',
    '\\fBsymroute\\fR(8)',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Shell completion

export function completionScript(shell: Shell): string {
  return shell === 'bash' ? bashCompletion() : zshCompletion();
}

const flagName = (o: OptionDoc) => o.flag.split(' ')[0]!;
const takesArgument = (o: OptionDoc) => o.flag.includes(' ');

function bashCompletion(): string {
  const cases = COMMANDS.map((c) => {
    const valued = c.options.filter(takesArgument);
    const valueCases = valued.map((o) => {
      const reply = o.values === 'file' ? 'compgen -f -- "$cur"' : o.values ? `compgen -W "${o.values.join(' ')}" -- "$cur"` : '';
      return `        ${flagName(o)}) ${reply ? `COMPREPLY=($(${reply}))` : 'COMPREPLY=()'}; return ;;`;
    });
    const operand = c.operands?.[0];
    const operandReply =
      operand?.values === 'file' ? 'compgen -f -- "$cur"' : operand?.values ? `compgen -W "${operand.values.join(' ')}" -- "$cur"` : '';
    return [
      `    ${c.name})`,
      ...(valueCases.length ? ['      case "$prev" in', ...valueCases, '      esac'] : []),
      `      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${[...c.options.map(flagName), '--help'].join(' ')}" -- "$cur"))`,
      operandReply ? `      else COMPREPLY=($(${operandReply}))` : '      else COMPREPLY=()',
      '      fi ;;',
    ].join('\n');
  });
  return `# bash completion for symroute (generated from its manual; "symroute completion bash")
_symroute() {
  local cur prev command
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "${COMMANDS.map((c) => c.name).join(' ')} --help --version" -- "$cur"))
    return
  fi
  command="\${COMP_WORDS[1]}"
  case "$command" in
${cases.join('\n')}
  esac
}
complete -o filenames -F _symroute symroute
`;
}

function zshCompletion(): string {
  const quote = (text: string) => text.replace(/'/g, `'\\''`).replace(/[[\]:]/g, (c) => `\\${c}`);
  const action = (o: OptionDoc) =>
    o.values === 'file' ? '_files' : o.values ? `(${o.values.join(' ')})` : ' ';
  const cases = COMMANDS.map((c) => {
    const specs = c.options.map((o) =>
      takesArgument(o)
        ? `'${flagName(o)}=[${quote(o.text)}]:${o.flag.split(' ')[1]!.toLowerCase()}:${action(o)}'`
        : `'${flagName(o)}[${quote(o.text)}]'`,
    );
    const operands = (c.operands ?? []).map((o) => `'1:${o.flag.toLowerCase()}:${action(o)}'`);
    return `    ${c.name})\n      _arguments ${[...specs, ...operands, "'(-h --help)'{-h,--help}'[show help]'"].join(' \\\n        ')} ;;`;
  });
  return `#compdef symroute
# zsh completion for symroute (generated from its manual; "symroute completion zsh")
_symroute() {
  local -a commands
  commands=(
${COMMANDS.map((c) => `    '${c.name}:${quote(c.summary)}'`).join('\n')}
  )
  if (( CURRENT == 2 )); then
    _describe command commands
    return
  fi
  words=(\${words[2,-1]})
  (( CURRENT-- ))
  case "\${words[1]}" in
${cases.join('\n')}
  esac
}
_symroute "$@"
`;
}
