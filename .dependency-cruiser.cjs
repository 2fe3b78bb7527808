// The layers of ARCHITECTURE.md, checked on every `npm test` (test/unit/layers.test.ts).
// Lowest first; a module imports only from layers below its own, never from a sibling on
// the same row, and nothing imports in a circle.
const LAYERS = [
  ['native', 'net', 'lab', 'build.ts', 'stop-signal.ts'], // leaves: the addon, address arithmetic, test tools
  ['netlink', 'config'], //                                  the wire protocol; the config file
  ['domain'], //                                             pure: model, mirror, planner, diff
  ['kernel', 'host'], //                                     adapters: rtnetlink; /proc/sys and /etc/iproute2
  ['control'], //                                            passes: scheduler, converger, daemon
  ['service'], //                                            the process: metrics, systemd, logs, control socket
  ['commands', 'manual.ts'], //                              operator commands; what the CLI says about itself
  ['cli.ts'], //                                             the entry point
];

const path = (part) => (part.endsWith('.ts') ? `^src/${part.replace('.', '\\.')}$` : `^src/${part}/`);
const anyOf = (parts) => `(${parts.map(path).join('|')})`;

const upward = LAYERS.flatMap((row, level) =>
  row.map((part) => {
    const siblings = row.filter((other) => other !== part);
    const above = LAYERS.slice(level + 1).flat();
    const forbidden = [...siblings, ...above];
    return {
      name: `layer-${part}`,
      comment: `${part} imports only from layers below it (ARCHITECTURE.md)`,
      severity: 'error',
      from: { path: path(part) },
      to: { path: anyOf(forbidden) },
    };
  }).filter((rule) => rule.to.path !== '()'),
);

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no module imports itself through others',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'layer-unknown',
      comment: 'every module of src/ belongs to a layer of this file',
      severity: 'error',
      from: { path: '^src/', pathNot: anyOf(LAYERS.flat()) },
      to: {},
    },
    ...upward,
    {
      name: 'service-not-netlink',
      comment: 'the process around the daemon reaches the kernel only through control/',
      severity: 'error',
      from: { path: '^src/service/' },
      to: { path: '^src/netlink/' },
    },
    {
      name: 'control-no-telemetry',
      comment: 'passes report; metrics and log lines are made from the report in service/',
      severity: 'error',
      from: { path: '^src/control/' },
      to: { path: '(^|/)node_modules/(prom-client|pino)/' },
    },
    {
      name: 'daemon-runs-no-program',
      comment: 'the daemon never runs a child process; only lab/ (tests, demo) does',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(lab|commands/demo\\.ts)' },
      to: { path: '^child_process$|^node:child_process$' },
    },
  ],
  options: {
    parser: 'swc',
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/|node_modules|^(node:)?[a-z_]+$',
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
