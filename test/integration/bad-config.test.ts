// A bad config must stop `symroute run` before it touches the kernel: exit status 2, and a
// message on stderr that leads the admin to the spot (file, line, key). Each case runs the
// real CLI inside a namespace whose NIC has an address, so a config wrongly accepted would
// show up as installed rules.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';

const CLI = join(REPO, 'dist/cli.js');
const EXIT_USAGE = 2;

/**
 * Runs `symroute <args>` in `ns` to completion. Unlike lab.runCli it has a liveness bound:
 * a config that is wrongly accepted starts the daemon, which would otherwise never return.
 */
async function symroute(ns: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], {
      timeout: 15_000,
      killSignal: 'SIGKILL',
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number | null; killed?: boolean; stdout: string; stderr: string };
    if (e.killed) return { code: null, stdout: e.stdout, stderr: `${e.stderr}\n(still running after 15 s: killed)` };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}


/** Runs symroute with `args` and checks it refused with exit 2 and left the kernel alone. */
async function expectRefused(lab: Lab, ns: string, args: string[]): Promise<string> {
  const before = await lab.kernelState(ns);
  const result = await symroute(ns, args);
  expect(result.code, result.stderr).toBe(EXIT_USAGE);
  expect(result.stdout).toBe(''); // not even a log line: the daemon never started
  const after = await lab.kernelState(ns);
  expect(after).toEqual(before);
  expect(after).not.toContain('"protocol":"83"');
  return result.stderr;
}

interface Mistake {
  mistake: string;
  /** The file, one entry per line, so the expected line number can be counted off. */
  lines: string[];
  line: number;
  /** The key path the message must name; absent where the file does not parse at all. */
  key?: string;
  says: string;
}

const MISTAKES: Mistake[] = [
  {
    mistake: 'an unknown key',
    lines: ['# symroute', 'rule:', '  priority: 30000', '  prio: 5'],
    line: 4,
    key: 'rule.prio',
    says: 'unknown key',
  },
  {
    mistake: 'a priority that is not a number',
    lines: ['rule:', '  match: address', '  priority: high'],
    line: 3,
    key: 'rule.priority',
    says: 'expected an integer 6..32603, got "high"',
  },
  {
    mistake: 'a priority out of range',
    lines: ['log:', '  level: info', 'rule:', '  priority: 40000'],
    line: 4,
    key: 'rule.priority',
    says: 'expected an integer 6..32603, got 40000',
  },
  {
    mistake: 'an unknown rule.match',
    lines: ['# match by subnet', 'rule: {match: subnet}'],
    line: 2,
    key: 'rule.match',
    says: 'expected one of "address", "prefix", got "subnet"',
  },
  {
    mistake: 'a table.base among the small table ids',
    lines: ['table:', '  base: 100'],
    line: 2,
    key: 'table.base',
    says: 'expected an integer 256..',
  },
  {
    mistake: 'an interface pinned to the main table',
    lines: ['table:', '  pinned:', '    n0: 254'],
    line: 3,
    key: 'table.pinned.n0',
    says: "the kernel's main table",
  },
  {
    mistake: 'two interfaces pinned to the same table',
    lines: ['table:', '  pinned:', '    n0: 500', '    n1: 500'],
    line: 4,
    key: 'table.pinned.n1',
    says: 'table 500 is already pinned to n0',
  },
  {
    mistake: 'a gateway of the wrong family',
    lines: ['gateways:', '  n0:', '    ipv4: 2001:db8::1'],
    line: 3,
    key: 'gateways.n0.ipv4',
    says: 'an IPv6 address belongs under ipv6',
  },
  {
    mistake: 'a gateway that is not an IP address',
    lines: ['gateways:', '  n0:', '    ipv6: 2001:db8::1', '    ipv4: router1'],
    line: 4,
    key: 'gateways.n0.ipv4',
    says: 'expected an IPv4 literal, got "router1"',
  },
  {
    mistake: 'interfaces.include given as a string',
    lines: ['interfaces:', '  include: "n*"'],
    line: 2,
    key: 'interfaces.include',
    says: 'expected a list of glob strings, got "n*"',
  },
  {
    // A file that does not parse has no trustworthy tree to name a key path from: the
    // parser's message and the line are what lead the admin to it.
    mistake: 'a YAML syntax error',
    lines: ['rule:', '  priority: 100', ' match: prefix'],
    line: 3,
    says: 'All mapping items must start at the same column',
  },
  {
    // The parser knows which key is repeated; the admin needs it named like every other
    // problem (`file:line: key.path: message`), not just "keys must be unique".
    mistake: 'a duplicate key',
    lines: ['rule:', '  priority: 100', '  match: prefix', '  priority: 200'],
    line: 4,
    key: 'rule.priority',
    says: 'duplicate key (first on line 2)',
  },
];

describe('a bad config', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it.each(MISTAKES)('is refused with file, line and key: $mistake', async ({ lines, line, key, says }) => {
    lab = new Lab();
    const ns = await lab.hostWithNic();
    const file = lab.writeConfig(`${lines.join('\n')}\n`);

    const stderr = await expectRefused(lab, ns, ['run', '--config', file]);

    // Exactly one problem, located at the line and key of the mistake.
    const problems = stderr.split('\n').filter((l) => l.startsWith(`${file}:`));
    expect(problems, stderr).toHaveLength(1);
    expect(problems[0]).toContain(`${file}:${line}: ${key ? `${key}: ` : ''}`);
    expect(problems[0]).toContain(says);
  });

  it('is refused when the --config file does not exist', async () => {
    lab = new Lab();
    const ns = await lab.hostWithNic();
    const missing = join(lab.dir, 'missing.yaml');

    const stderr = await expectRefused(lab, ns, ['run', '--config', missing]);

    // A file named on the command line has to be there; only the default path may be absent.
    expect(stderr).toContain(`${missing}: cannot read config`);
    expect(stderr).toMatch(/no such file/i);
  });
});

describe('a config that is not text symroute reads', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('is refused when it holds bytes that are not UTF-8, naming file and line', async () => {
    lab = new Lab();
    const ns = await lab.hostWithNic();
    // A Latin-1 editor's "ä": it used to become U+FFFD and the glob matched other names.
    const file = join(lab.dir, 'latin1.yaml');
    writeFileSync(file, Buffer.from('interfaces:\n  include: ["n\xe4*", "n0"]\n', 'latin1'));

    const stderr = await expectRefused(lab, ns, ['run', '--config', file]);
    expect(stderr).toContain(`${file}:2: not valid UTF-8 (byte 0xe4 at byte 15 of the line)`);

    const check = await symroute(ns, ['check-config', file]);
    expect(check.code).toBe(EXIT_USAGE);
    expect(check.stderr).toContain(`${file}:2: not valid UTF-8`);
  });

  it('is refused when it is larger than 1 MiB', async () => {
    lab = new Lab();
    const ns = await lab.hostWithNic();
    const file = lab.writeConfig(`on_exit: keep\n${`#${'x'.repeat(1022)}\n`.repeat(1025)}`);

    const stderr = await expectRefused(lab, ns, ['run', '--config', file]);
    expect(stderr).toContain(`${file}: config is larger than 1048576 bytes (1 MiB)`);
  });
});

describe('a bad command line', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('is refused for an unknown flag', async () => {
    lab = new Lab();
    const ns = await lab.hostWithNic();

    const stderr = await expectRefused(lab, ns, ['run', '--bogus-flag']);

    expect(stderr).toContain('--bogus-flag');
    expect(stderr).toContain('Usage: symroute');
  });
});
