import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  DEFAULT_EXCLUDE,
  defaultConfig,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfig,
  type Config,
} from '../../src/config/config.js';
import { matchesGlob } from '../../src/config/glob.js';
import { isManagedName } from '../../src/domain/interface-names.js';

const FILE = '/etc/symroute/symroute.yaml';

/** Joins fixture lines, so a test can count its way to the line it expects in a message. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

/** The single problem in `text`, without the file name. */
function problemOf(text: string): string {
  const problems = problemsOf(text);
  expect(problems).toHaveLength(1);
  expect(problems[0]!.startsWith(`${FILE}:`)).toBe(true);
  return problems[0]!.slice(FILE.length + 1);
}

const managed = (overrides: Partial<Config['interfaces']>): Config => {
  const config = defaultConfig();
  config.interfaces = { ...config.interfaces, ...overrides };
  return config;
};

describe('defaults', () => {
  it('are the documented values', () => {
    expect(defaultConfig()).toEqual({
      interfaces: { include: ['*'], exclude: [...DEFAULT_EXCLUDE] },
      table: { base: 1000, pinned: {} },
      rule: { priority: 30000, match: 'address' },
      gateways: {},
      exceptions: [],
      containerRoutes: true,
      sysctl: 'report',
      iproute2Dir: 'auto',
      protocol: 83,
      onExit: 'keep',
      log: { level: 'info' },
      metrics: { listen: { host: '127.0.0.1', port: 9477 } },
      verify: { interval: 60 },
    });
    expect(DEFAULT_CONFIG_PATH).toBe('/etc/symroute/symroute.yaml');
  });

  it('are returned fresh each time', () => {
    const first = defaultConfig();
    first.interfaces.exclude.push('eth*');
    first.table.pinned.eth0 = 5;
    expect(defaultConfig().table.pinned).toEqual({});
    expect(defaultConfig().interfaces.exclude).toEqual(DEFAULT_EXCLUDE);
  });

  it('exclude container, VM and tunnel plumbing but not bonds', () => {
    const expected = ['docker*', 'veth*', 'br-*', 'virbr*', 'cni*', 'cali*', 'flannel*', 'tun*', 'tap*', 'vxlan*'];
    for (const glob of [...expected, 'wg*', 'kube-*', 'lxc*', 'vnet*', 'ifb*']) {
      expect(DEFAULT_EXCLUDE).toContain(glob);
    }
    expect(DEFAULT_EXCLUDE).not.toContain('bond*');
    expect(() => (DEFAULT_EXCLUDE as string[]).push('x')).toThrow();
  });

  it('come from an empty file', () => {
    expect(parseConfig('', FILE)).toEqual(defaultConfig());
  });

  it('come from a file of comments and blank lines', () => {
    const text = yaml('# symroute', '', '# rule:', '#   priority: 100', '   ');
    expect(parseConfig(text, FILE)).toEqual(defaultConfig());
  });

  it('come from a document marker alone', () => {
    expect(parseConfig('---\n', FILE)).toEqual(defaultConfig());
  });

  it('fill sections whose contents are commented out', () => {
    const text = yaml(
      'interfaces:',
      'table:',
      '  pinned:',
      'rule:',
      'gateways:',
      '#  eth0:',
      '#    ipv4: 198.51.100.1',
      'log:',
    );
    expect(parseConfig(text, FILE)).toEqual(defaultConfig());
  });
});

describe('merging with defaults', () => {
  it('keeps the defaults of keys a partial section leaves out', () => {
    const config = parseConfig('rule: {match: prefix}\n', FILE);
    expect(config.rule).toEqual({ priority: 30000, match: 'prefix' });
    expect(config.table).toEqual({ base: 1000, pinned: {} });
  });

  it('reads every key', () => {
    const text = yaml(
      'interfaces:',
      '  include: ["eth*", "en?[0-9]*"]',
      '  exclude: ["eth9"]',
      'table:',
      '  base: 5000',
      '  pinned:',
      '    eth0: 100',
      '    eth1: 101',
      'rule:',
      '  priority: 100',
      '  match: prefix',
      'gateways:',
      '  eth0:',
      '    ipv4: 198.51.100.1',
      '    ipv6: fe80::1',
      '  eth1:',
      '    ipv6: "  2001:db8::1  "',
      'exceptions: [169.254.169.254, "35.191.0.0/16", "2001:DB8::/32"]',
      'container_routes: false',
      'sysctl: manage',
      'iproute2_dir: /run/symroute/iproute2',
      'protocol: 200',
      'on_exit: remove',
      'log:',
      '  level: debug',
      'metrics:',
      '  listen: "[::1]:9100"',
      'verify:',
      '  interval: 30',
    );
    expect(parseConfig(text, FILE)).toEqual({
      interfaces: { include: ['eth*', 'en?[0-9]*'], exclude: ['eth9'] },
      table: { base: 5000, pinned: { eth0: 100, eth1: 101 } },
      rule: { priority: 100, match: 'prefix' },
      gateways: { eth0: { ipv4: '198.51.100.1', ipv6: 'fe80::1' }, eth1: { ipv6: '2001:db8::1' } },
      exceptions: ['169.254.169.254/32', '35.191.0.0/16', '2001:db8::/32'],
      containerRoutes: false,
      sysctl: 'manage',
      iproute2Dir: '/run/symroute/iproute2',
      protocol: 200,
      onExit: 'remove',
      log: { level: 'debug' },
      metrics: { listen: { host: '::1', port: 9100 } },
      verify: { interval: 30 },
    } satisfies Config);
  });

  it('turns metrics off with listen: false', () => {
    expect(parseConfig('metrics:\n  listen: false\n', FILE).metrics).toEqual({ listen: false });
  });

  it('rejects a metrics address that is not an IP and port', () => {
    for (const bad of ['localhost:9477', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '::1:9477', 'true']) {
      expect(problemOf(`metrics:\n  listen: ${JSON.stringify(bad)}\n`)).toMatch(
        /^2: metrics\.listen: expected false or an IP address and port such as "127\.0\.0\.1:9477" or "\[::1\]:9477", got /,
      );
    }
  });

  it('takes a verify interval in seconds, or false, and nothing else', () => {
    expect(parseConfig('verify:\n  interval: false\n', FILE).verify).toEqual({ interval: false });
    expect(parseConfig('verify: {interval: 1.5}\n', FILE).verify).toEqual({ interval: 1.5 });
    for (const bad of ['0', '-5', '"60s"', 'true', '100000']) {
      expect(problemOf(`verify:\n  interval: ${bad}\n`)).toMatch(/^2: verify\.interval: expected seconds 1\.\.86400, or false for no periodic sweep, got /);
    }
  });

  it('replaces the default exclude list instead of adding to it', () => {
    const config = parseConfig('interfaces:\n  exclude: ["eth9"]\n', FILE);
    expect(config.interfaces).toEqual({ include: ['*'], exclude: ['eth9'] });
    expect(parseConfig('interfaces: {exclude: []}\n', FILE).interfaces.exclude).toEqual([]);
  });

  it('keeps interface names as written, even when they look like numbers', () => {
    const text = yaml('table:', '  pinned:', '    0x10: 2000', '    eth0.100: 2001', '    "1": 2002');
    const config = parseConfig(text, FILE);
    expect(config.table.pinned).toEqual({ '0x10': 2000, 'eth0.100': 2001, '1': 2002 });
  });

  it('keeps an interface named __proto__ an ordinary key', () => {
    const text = yaml('table: {pinned: {__proto__: 2000}}', 'gateways: {__proto__: {ipv4: 198.51.100.1}}');
    const config = parseConfig(text, FILE);
    expect(Object.keys(config.table.pinned)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(config.table.pinned)).toBe(Object.prototype);
    expect(Object.keys(config.gateways)).toEqual(['__proto__']);
  });

  it('accepts the extremes of every range', () => {
    const low = parseConfig('table: {base: 256, pinned: {a: 1}}\nrule: {priority: 6}\nprotocol: 5\n', FILE);
    expect([low.table.base, low.table.pinned.a, low.rule.priority, low.protocol]).toEqual([256, 1, 6, 5]);
    const high = parseConfig(
      'table: {base: 4294901759, pinned: {a: 4294967295}}\nrule: {priority: 32603}\nprotocol: 255\n',
      FILE,
    );
    expect([high.table.base, high.table.pinned.a, high.rule.priority, high.protocol]).toEqual([
      4294901759, 4294967295, 32603, 255,
    ]);
  });

  it('takes integers in any YAML notation', () => {
    expect(parseConfig('protocol: 0x53\n', FILE).protocol).toBe(83);
    expect(parseConfig('rule: {priority: 1e3}\n', FILE).rule.priority).toBe(1000);
  });

  it('resolves anchors and aliases', () => {
    const config = parseConfig(yaml('table:', '  base: &base 2000', '  pinned: {eth0: *base}'), FILE);
    expect(config.table).toEqual({ base: 2000, pinned: { eth0: 2000 } });
  });

  it('resolves an alias of a list used more than once', () => {
    const config = parseConfig(yaml('interfaces:', '  include: &uplinks ["eth*", "ens*"]', '  exclude: *uplinks'), FILE);
    expect(config.interfaces).toEqual({ include: ['eth*', 'ens*'], exclude: ['eth*', 'ens*'] });
  });

  it('turns name files off with false', () => {
    const config = parseConfig('iproute2_dir: false\n', FILE);
    expect(config.iproute2Dir).toBe(false);
  });

  it('accepts an IPv6 gateway for link-local and global addresses alike', () => {
    const config = parseConfig('gateways: {eth0: {ipv6: "fe80::1:2"}, eth1: {ipv6: "::1"}}\n', FILE);
    expect(config.gateways).toEqual({ eth0: { ipv6: 'fe80::1:2' }, eth1: { ipv6: '::1' } });
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'symroute-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('falls back to the defaults when the default file does not exist', () => {
    expect(loadConfig(undefined, { defaultPath: join(dir, 'absent.yaml') })).toEqual(defaultConfig());
  });

  it('reads the default file when it exists', () => {
    const path = join(dir, 'default.yaml');
    writeFileSync(path, 'on_exit: remove\n');
    expect(loadConfig(undefined, { defaultPath: path }).onExit).toBe('remove');
  });

  it('does not hide a default path that exists but cannot be read', () => {
    const path = join(dir, 'a-directory');
    mkdirSync(path);
    expect(() => loadConfig(undefined, { defaultPath: path })).toThrow(`${path}: cannot read config: EISDIR`);
  });

  it('reads an explicit path', () => {
    const path = join(dir, 'explicit.yaml');
    writeFileSync(path, 'log:\n  level: trace\n');
    expect(loadConfig(path).log.level).toBe('trace');
  });

  it('rejects an explicit path that does not exist, naming it', () => {
    const path = join(dir, 'missing.yaml');
    let error: unknown;
    try {
      loadConfig(path, { defaultPath: join(dir, 'absent.yaml') });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      `${path}: cannot read config: ENOENT: no such file or directory`,
    ]);
  });

  /** The problems loadConfig reports for a file holding `bytes`. */
  function problemsOfFile(name: string, bytes: Buffer): string[] {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    try {
      loadConfig(path);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems.map((p) => p.replace(path, '<file>'));
    }
    throw new Error('expected a ConfigError');
  }
  const utf8 = (text: string) => Buffer.from(text, 'utf8');
  const latin1 = (text: string) => Buffer.from(text, 'latin1');

  describe('rejects bytes that are not UTF-8, naming the line of the first one', () => {
    it.each([
      // The two the field found: random bytes, and a Latin-1 editor's "ä" in a glob.
      ['binary bytes in a glob', Buffer.concat([utf8('interfaces:\n  include: ["t'), Buffer.from([0xff, 0xfe]), utf8('*"]\n')]), 2, 'ff', 15],
      ['a Latin-1 "ä"', latin1('# uplinks\ninterfaces:\n  include: ["eth\xe4*"]\n'), 3, 'e4', 17],
      ['an overlong "/"', Buffer.concat([utf8('log:\n  level: info # '), Buffer.from([0xc0, 0xaf]), utf8('\n')]), 2, 'c0', 17],
      ['an encoded surrogate', Buffer.concat([utf8('# '), Buffer.from([0xed, 0xa0, 0x80]), utf8('\n')]), 1, 'ed', 3],
      ['a sequence cut off at the end', Buffer.concat([utf8('on_exit: keep\n# '), Buffer.from([0xe2, 0x82])]), 2, 'e2', 3],
    ])('%s', (_name, bytes, line, byte, column) => {
      expect(problemsOfFile('latin1.yaml', bytes)).toEqual([
        `<file>:${line}: not valid UTF-8 (byte 0x${byte} at byte ${column} of the line); save the file as UTF-8`,
      ]);
    });

    it('but reads UTF-8 text beyond ASCII', () => {
      const path = join(dir, 'utf8.yaml');
      writeFileSync(path, utf8('# Uplinks für Ä-Netz 🚀\ninterfaces:\n  include: ["eth*"]\n'));
      expect(loadConfig(path).interfaces.include).toEqual(['eth*']);
    });
  });

  it('reads a file of exactly 1 MiB', () => {
    const body = 'on_exit: remove\n';
    const bytes = utf8(body + '#'.repeat(MAX_CONFIG_BYTES - body.length - 1) + '\n');
    expect(bytes.length).toBe(MAX_CONFIG_BYTES);
    const path = join(dir, 'exactly.yaml');
    writeFileSync(path, bytes);
    expect(loadConfig(path).onExit).toBe('remove');
  });

  it('rejects a file of more than 1 MiB', () => {
    const body = 'on_exit: remove\n';
    const bytes = utf8(body + '#'.repeat(MAX_CONFIG_BYTES - body.length) + '\n');
    expect(problemsOfFile('big.yaml', bytes)).toEqual([
      '<file>: config is larger than 1048576 bytes (1 MiB), the most symroute reads',
    ]);
  });

  it('rejects a huge file by its size, without reading it', () => {
    // 64 GiB, sparse: reading it would take minutes and all memory.
    const path = join(dir, 'huge.yaml');
    writeFileSync(path, 'on_exit: remove\n');
    truncateSync(path, 64 * 1024 ** 3);
    expect(() => loadConfig(path)).toThrow(`${path}: config is larger than 1048576 bytes (1 MiB), the most symroute reads`);
  });

  it('stops reading a file whose size stat cannot tell at the limit', () => {
    // A character device: stat says 0 bytes, and it never ends.
    expect(() => loadConfig('/dev/zero')).toThrow('/dev/zero: config is larger than 1048576 bytes (1 MiB)');
  });

  it('names the file in validation problems', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, '# header\nprotocol: 2\n');
    expect(() => loadConfig(path)).toThrow(
      `${path}:2: protocol: expected an integer 5..255, got 2 (0-4 are reserved by the kernel)`,
    );
  });
});

describe('ConfigError', () => {
  it('joins its problems into the message', () => {
    const error = new ConfigError(['a:1: x', 'a:2: y']);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigError');
    expect(error.message).toBe('a:1: x\na:2: y');
    expect(error.problems).toEqual(['a:1: x', 'a:2: y']);
  });
});

describe('problems', () => {
  it('carry the file, the line of the value and the key path', () => {
    const text = yaml(
      '# symroute configuration',
      'interfaces:',
      '  include: ["*"]',
      'table:',
      '  base: 1000',
      'rule:',
      '  priority: high',
    );
    expect(problemsOf(text)).toEqual([
      '/etc/symroute/symroute.yaml:7: rule.priority: expected an integer 6..32603, got "high"',
    ]);
  });

  it('are all reported, in file order', () => {
    const text = yaml(
      'rule:',
      '  priority: 0',
      '  match: both',
      'table:',
      '  base: 10',
      'protocol: 300',
      'log: {level: loud}',
      'colour: blue',
    );
    expect(problemsOf(text)).toEqual([
      `${FILE}:2: rule.priority: expected an integer 6..32603, got 0 (the kernel's local-table rule)`,
      `${FILE}:3: rule.match: expected one of "address", "prefix", got "both"`,
      `${FILE}:5: table.base: expected an integer 256..4294901759, got 10`,
      `${FILE}:6: protocol: expected an integer 5..255, got 300`,
      `${FILE}:7: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", got "loud"`,
      `${FILE}:8: colour: unknown key (known: interfaces, table, rule, gateways, exceptions, container_routes, sysctl, iproute2_dir, protocol, on_exit, log, metrics, verify)`,
    ]);
    expect(() => parseConfig(text, FILE)).toThrow(problemsOf(text).join('\n'));
  });

  describe('unknown keys', () => {
    it('are reported at the top level', () => {
      expect(problemOf('\non-exit: keep\n')).toBe(
        '2: on-exit: unknown key (known: interfaces, table, rule, gateways, exceptions, container_routes, sysctl, iproute2_dir, protocol, on_exit, log, metrics, verify)',
      );
    });

    it('are reported with their full path and the line of the key', () => {
      expect(problemOf(yaml('rule:', '  match: prefix', '  prio:', '    30000'))).toBe(
        '3: rule.prio: unknown key (known: priority, match)',
      );
      expect(problemOf(yaml('interfaces:', '  includes: []'))).toBe(
        '2: interfaces.includes: unknown key (known: include, exclude)',
      );
      expect(problemOf(yaml('table:', '  pinned: {}', '  step: 1'))).toBe(
        '3: table.step: unknown key (known: base, pinned)',
      );
      expect(problemOf(yaml('log:', '  file: /var/log/x'))).toBe('2: log.file: unknown key (known: level)');
    });

    it('are reported inside a gateway', () => {
      expect(problemOf(yaml('gateways:', '  eth0:', '    ipv4: 198.51.100.1', '    inet6: "::1"'))).toBe(
        '4: gateways.eth0.inet6: unknown key (known: ipv4, ipv6)',
      );
    });

    it('include keys that are not plain scalars', () => {
      expect(problemOf(yaml('rule:', '  ? [priority]', '  : 5'))).toBe('2: rule: expected a plain key');
    });
  });

  describe('the document', () => {
    it('must be a mapping', () => {
      expect(problemOf('- rule\n- table\n')).toBe('1: expected a mapping at the top level');
      expect(problemOf('# a comment\n\nsymroute\n')).toBe('3: expected a mapping at the top level');
    });

    it('must be valid YAML', () => {
      expect(problemsOf(yaml('rule:', '  priority: 1', '  match: [prefix', 'protocol: 5'))).toEqual([
        `${FILE}:4: Flow sequence in block collection must be sufficiently indented and end with a ]`,
      ]);
      expect(problemOf(yaml('rule:', '\tpriority: 1'))).toBe('2: Tabs are not allowed as indentation');
    });

    it('must not repeat a key', () => {
      expect(problemOf(yaml('rule:', '  priority: 100', '  match: prefix', '  priority: 200'))).toBe(
        '4: rule.priority: duplicate key (first on line 2)',
      );
      expect(problemOf(yaml('protocol: 100', 'log: {level: info}', 'protocol: 101'))).toBe(
        '3: protocol: duplicate key (first on line 1)',
      );
    });

    it('must hold a single document', () => {
      expect(problemOf(yaml('protocol: 100', '---', 'protocol: 101'))).toMatch(
        /^2: Source contains multiple documents/,
      );
    });
  });

  describe('sections', () => {
    it('must be mappings', () => {
      expect(problemOf('rule: 5\n')).toBe('1: rule: expected a mapping, got 5');
      expect(problemOf('log: debug\n')).toBe('1: log: expected a mapping, got "debug"');
      expect(problemOf(yaml('table:', '  - 1000'))).toBe('2: table: expected a mapping, got a list');
      expect(problemOf('interfaces: true\n')).toBe('1: interfaces: expected a mapping, got true');
      expect(problemOf(yaml('table:', '  pinned: [eth0]'))).toBe(
        '2: table.pinned: expected a mapping, got a list',
      );
      expect(problemOf('gateways: 198.51.100.1\n')).toBe('1: gateways: expected a mapping, got "198.51.100.1"');
    });
  });

  describe('values of the wrong type', () => {
    it('say what they got', () => {
      expect(problemOf('protocol: "83"\n')).toBe('1: protocol: expected an integer 5..255, got "83"');
      expect(problemOf('protocol: 83.5\n')).toBe('1: protocol: expected an integer 5..255, got 83.5');
      expect(problemOf('protocol: [83]\n')).toBe('1: protocol: expected an integer 5..255, got a list');
      expect(problemOf('protocol: {n: 83}\n')).toBe('1: protocol: expected an integer 5..255, got a mapping');
      expect(problemOf('on_exit: false\n')).toBe('1: on_exit: expected one of "keep", "remove", got false');
      expect(problemOf('protocol: .inf\n')).toBe('1: protocol: expected an integer 5..255, got Infinity');
    });

    it('say "got nothing" for a missing value, on the line of its key', () => {
      expect(problemOf(yaml('rule:', '  priority:', '', '  match: prefix'))).toBe(
        '2: rule.priority: expected an integer 6..32603, got nothing',
      );
      expect(problemOf(yaml('rule:', '  match: ~'))).toBe(
        '2: rule.match: expected one of "address", "prefix", got nothing',
      );
      expect(problemOf(yaml('', 'log: {level}'))).toBe(
        '2: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", got nothing',
      );
      expect(problemOf('on_exit:\n')).toBe('1: on_exit: expected one of "keep", "remove", got nothing');
    });

    it('include aliases that expand beyond 100 nodes, reported before anything is expanded', () => {
      // Ten levels of ten aliases each, 10^10 globs if expanded, under a key that exists.
      const levels = [`    - &x0 [${Array(10).fill('"eth*"').join(', ')}]`];
      for (let i = 1; i <= 10; i++) levels.push(`    - &x${i} [${Array(10).fill(`*x${i - 1}`).join(', ')}]`);
      expect(problemOf(yaml('interfaces:', '  exclude:', ...levels))).toBe(
        '4: YAML aliases expand to more than 100 nodes (aliases of aliases multiply); write the values out instead',
      );
    });

    it('locate an alias at the place it is used', () => {
      expect(problemsOf(yaml('table:', '  base: &n 1', 'protocol: *n'))).toEqual([
        `${FILE}:2: table.base: expected an integer 256..4294901759, got 1`,
        `${FILE}:3: protocol: expected an integer 5..255, got 1 (0-4 are reserved by the kernel)`,
      ]);
    });
  });

  describe('rule.priority', () => {
    it.each([
      [0, " (the kernel's local-table rule)"],
      [32766, " (the kernel's main-table rule)"],
      [32767, " (the kernel's default-table rule)"],
      [40000, ''],
      [-5, ''],
    ])('rejects %s', (priority, note) => {
      expect(problemOf(`rule:\n  priority: ${priority}\n`)).toBe(
        `2: rule.priority: expected an integer 6..32603, got ${priority}${note}`,
      );
    });
  });

  describe('rule.match', () => {
    it('is address or prefix', () => {
      expect(problemOf('rule: {match: Address}\n')).toBe(
        '1: rule.match: expected one of "address", "prefix", got "Address"',
      );
    });
  });

  describe('table.base', () => {
    it.each([255, 0, 4294901760, 4294967295])('rejects %s', (base) => {
      expect(problemOf(`table:\n  base: ${base}\n`)).toBe(
        `2: table.base: expected an integer 256..4294901759, got ${base}`,
      );
    });
  });

  describe('table.pinned', () => {
    const expected = 'expected a table id 1..4294967295 other than 253-255';

    it.each([
      [0, ''],
      [253, " (the kernel's default table)"],
      [254, " (the kernel's main table)"],
      [255, " (the kernel's local table)"],
      [4294967296, ''],
      [-1, ''],
    ])('rejects table %s', (table, note) => {
      expect(problemOf(yaml('table:', '  pinned:', `    eth0: ${table}`))).toBe(
        `3: table.pinned.eth0: ${expected}, got ${table}${note}`,
      );
    });

    it('rejects a table that is not an integer', () => {
      expect(problemOf('table: {pinned: {eth0: main}}\n')).toBe(
        `1: table.pinned.eth0: ${expected}, got "main"`,
      );
      expect(problemOf(yaml('table:', '  pinned:', '    eth0:'))).toBe(
        `3: table.pinned.eth0: ${expected}, got nothing`,
      );
    });

    it('rejects two interfaces pinned to one table, at the second', () => {
      const text = yaml('table:', '  pinned:', '    eth0: 100', '    eth1: 101', '    eth2: 100');
      expect(problemOf(text)).toBe('5: table.pinned.eth2: table 100 is already pinned to eth0');
    });

    it('rejects invalid interface names at the key, and still checks their tables', () => {
      const rules = `(1..15 bytes; no '/', ':' or whitespace; not "." or "..")`;
      const text = yaml(
        'table:',
        '  pinned:',
        '    a-name-of-16-chr: 100',
        '    "eth/0": 101',
        '    "eth0:1": 102',
        '    "eth 0": 103',
        '    ".": 104',
        '    "..": 105',
        '    "": 106',
        '    "\\tx": 107',
        '    ééééééé: 108',
        '    éééééééé: 109',
        '    fifteen-chars-x: 254',
      );
      expect(problemsOf(text)).toEqual([
        `${FILE}:3: table.pinned: invalid interface name "a-name-of-16-chr" ${rules}`,
        `${FILE}:4: table.pinned: invalid interface name "eth/0" ${rules}`,
        `${FILE}:5: table.pinned: invalid interface name "eth0:1" ${rules}`,
        `${FILE}:6: table.pinned: invalid interface name "eth 0" ${rules}`,
        `${FILE}:7: table.pinned: invalid interface name "." ${rules}`,
        `${FILE}:8: table.pinned: invalid interface name ".." ${rules}`,
        `${FILE}:9: table.pinned: invalid interface name "" ${rules}`,
        `${FILE}:10: table.pinned: invalid interface name "\\tx" ${rules}`,
        `${FILE}:12: table.pinned: invalid interface name "éééééééé" ${rules}`,
        `${FILE}:13: table.pinned.fifteen-chars-x: ${expected}, got 254 (the kernel's main table)`,
      ]);
    });
  });

  describe('gateways', () => {
    it('rejects addresses that are not IP literals', () => {
      expect(problemOf(yaml('gateways:', '  eth0:', '    ipv4: 198.51.100.300'))).toBe(
        '3: gateways.eth0.ipv4: expected an IPv4 literal, got "198.51.100.300"',
      );
      expect(problemOf(yaml('gateways:', '  eth0:', '    ipv6: router'))).toBe(
        '3: gateways.eth0.ipv6: expected an IPv6 literal, got "router"',
      );
      expect(problemOf('gateways: {eth0: {ipv4: 3325256705}}\n')).toBe(
        '1: gateways.eth0.ipv4: expected an IPv4 literal, got 3325256705',
      );
      expect(problemOf('gateways: {eth0: {ipv4: 198.51.100.0/24}}\n')).toBe(
        '1: gateways.eth0.ipv4: expected an IPv4 literal, got "198.51.100.0/24"',
      );
      expect(problemOf('gateways: {eth0: {ipv4: }}\n')).toBe(
        '1: gateways.eth0.ipv4: expected an IPv4 literal, got nothing',
      );
    });

    it('says when an address is of the other family', () => {
      expect(problemOf(yaml('gateways:', '  eth0:', '    ipv4: "2001:db8::1"'))).toBe(
        '3: gateways.eth0.ipv4: expected an IPv4 literal, got "2001:db8::1" ' +
          '(an IPv6 address belongs under ipv6)',
      );
      expect(problemOf(yaml('gateways:', '  eth0:', '    ipv6: 198.51.100.1'))).toBe(
        '3: gateways.eth0.ipv6: expected an IPv6 literal, got "198.51.100.1" ' +
          '(an IPv4 address belongs under ipv4)',
      );
    });

    it('rejects a zone index, which the interface already implies', () => {
      expect(problemOf('gateways: {eth0: {ipv6: "fe80::1%eth0"}}\n')).toBe(
        '1: gateways.eth0.ipv6: expected an IPv6 literal, got "fe80::1%eth0" ' +
          '(leave out the zone index: the interface implies it)',
      );
    });

    it('wants a mapping per interface and valid interface names', () => {
      expect(problemOf(yaml('gateways:', '  eth0: 198.51.100.1'))).toBe(
        '2: gateways.eth0: expected a mapping, got "198.51.100.1"',
      );
      expect(problemOf(yaml('gateways:', '  eth0: {ipv4: 198.51.100.1}', '  "wan/0": {ipv4: 198.51.100.1}'))).toBe(
        `3: gateways: invalid interface name "wan/0" (1..15 bytes; no '/', ':' or whitespace; not "." or "..")`,
      );
    });

    it('allows an interface with no gateways', () => {
      expect(parseConfig('gateways:\n  eth0:\n', FILE).gateways).toEqual({ eth0: {} });
    });
  });

  describe('interfaces.include and interfaces.exclude', () => {
    it('must be lists', () => {
      expect(problemOf(yaml('interfaces:', '  include: "eth*"'))).toBe(
        '2: interfaces.include: expected a list of glob strings, got "eth*"',
      );
      expect(problemOf(yaml('interfaces:', '  exclude:'))).toBe(
        '2: interfaces.exclude: expected a list of glob strings, got nothing',
      );
      expect(problemOf(yaml('interfaces:', '  exclude: {docker: yes}'))).toBe(
        '2: interfaces.exclude: expected a list of glob strings, got a mapping',
      );
    });

    it('must hold non-empty glob strings, each reported at its own line', () => {
      const text = yaml(
        'interfaces:',
        '  exclude:',
        '    - docker*',
        '    - ""',
        '    - 42',
        '    -',
        '    - "eth[0-9"',
        '    - "en[z-a]"',
      );
      expect(problemsOf(text)).toEqual([
        `${FILE}:4: interfaces.exclude[1]: expected a non-empty glob string, got ""`,
        `${FILE}:5: interfaces.exclude[2]: expected a non-empty glob string, got 42`,
        `${FILE}:6: interfaces.exclude[3]: expected a non-empty glob string, got nothing`,
        `${FILE}:7: interfaces.exclude[4]: expected a non-empty glob string, got "eth[0-9" (unbalanced '[')`,
        `${FILE}:8: interfaces.exclude[5]: expected a non-empty glob string, got "en[z-a]" ` +
          '(reversed range in a character class)',
      ]);
    });
  });

  describe('protocol', () => {
    it.each([0, 1, 2, 3, 4])('says %s is reserved by the kernel', (protocol) => {
      expect(problemOf(`protocol: ${protocol}\n`)).toBe(
        `1: protocol: expected an integer 5..255, got ${protocol} (0-4 are reserved by the kernel)`,
      );
    });

    it.each([256, -1])('rejects %s', (protocol) => {
      expect(problemOf(`protocol: ${protocol}\n`)).toBe(
        `1: protocol: expected an integer 5..255, got ${protocol}`,
      );
    });
  });

  describe('on_exit and log.level', () => {
    it('take only their known words', () => {
      expect(problemOf('on_exit: delete\n')).toBe(
        '1: on_exit: expected one of "keep", "remove", got "delete"',
      );
      expect(problemOf('onExit: remove\n')).toMatch(/^1: onExit: unknown key \(known: .*on_exit/);
      for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const) {
        expect(parseConfig(`log: {level: ${level}}\n`, FILE).log.level).toBe(level);
      }
      expect(problemOf('log:\n  level: warning\n')).toBe(
        '2: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", got "warning"',
      );
    });
  });
});

describe('matchesGlob', () => {
  it.each([
    ['*', 'eth0', true],
    ['*', '', true],
    ['eth*', 'eth0', true],
    ['eth*', 'eth', true],
    ['eth*', 'xeth0', false],
    ['eth0', 'eth0', true],
    ['eth0', 'eth01', false],
    ['eth0', 'veth0', false],
    ['br-*', 'br-1a2b3c', true],
    ['br-*', 'bridge0', false],
    ['eth?', 'eth1', true],
    ['eth?', 'eth10', false],
    ['eth?', 'eth', false],
    ['*0', 'wlan0', true],
    ['*0', 'wlan1', false],
    ['en*s*', 'enp3s0', true],
    ['eth[012]', 'eth1', true],
    ['eth[012]', 'eth3', false],
    ['eth[0-9]', 'eth7', true],
    ['eth[0-9]', 'etha', false],
    ['eth[0-9]', 'eth10', false],
    ['eth[0-9]*', 'eth10', true],
    ['eth[!0]', 'eth1', true],
    ['eth[!0]', 'eth0', false],
    ['eth[^0]', 'eth0', false],
    ['eth[!0-4]', 'eth5', true],
    ['[]a]', ']', true],
    ['[]a]', 'a', true],
    ['[!]]', 'x', true],
    ['[!]]', ']', false],
    ['[a-]', '-', true],
    ['x[.]y', 'x.y', true],
    ['x[.]y', 'xzy', false],
    ['eth0.100', 'eth0.100', true],
    ['eth0.100', 'eth0x100', false],
    ['a+b', 'a+b', true],
    ['a+b', 'aab', false],
    ['(x|y)', '(x|y)', true],
    ['a\\b', 'a\\b', true],
    ['eth]', 'eth]', true],
    ['eth[0', 'eth[0', false],
    ['eth[z-a]', 'etha', false],
  ])('%s against %s is %s', (pattern, name, expected) => {
    expect(matchesGlob(pattern, name)).toBe(expected);
  });

  const literalName = fc.string({ minLength: 1, maxLength: 15 }).filter((name) => !/[*?[]/.test(name));
  const anyName = fc.string({ maxLength: 15, unit: 'binary' });

  it('matches a name without metacharacters only against itself', () => {
    fc.assert(
      fc.property(literalName, literalName, (name, other) => {
        expect(matchesGlob(name, name)).toBe(true);
        expect(matchesGlob(name, other)).toBe(name === other);
      }),
    );
  });

  it('matches every name with *', () => {
    fc.assert(fc.property(anyName, (name) => matchesGlob('*', name)));
  });

  it('matches every name with its own prefix followed by *', () => {
    fc.assert(
      fc.property(literalName, literalName, (prefix, rest) => matchesGlob(`${prefix}*`, prefix + rest)),
    );
  });
});

describe('isManagedName', () => {
  it('never manages lo', () => {
    expect(isManagedName(defaultConfig(), 'lo')).toBe(false);
    expect(isManagedName(managed({ include: ['lo', '*'], exclude: [] }), 'lo')).toBe(false);
    expect(isManagedName(defaultConfig(), 'lo0')).toBe(true);
  });

  it('manages physical NICs, bonds and VLANs by default but not virtual plumbing', () => {
    for (const name of ['eth0', 'enp3s0', 'eno1', 'wlan0', 'bond0', 'eth0.100', 'br0']) {
      expect(isManagedName(defaultConfig(), name), name).toBe(true);
    }
    const plumbing = ['docker0', 'veth1a2b', 'br-0123abcd', 'virbr0', 'cni0', 'cali123', 'flannel.1', 'tun0', 'tap3'];
    for (const name of [...plumbing, 'wg0', 'vxlan.calico', 'kube-ipvs0', 'lxcbr0', 'vnet2', 'ifb0', 'tunl0', 'sit0']) {
      expect(isManagedName(defaultConfig(), name), name).toBe(false);
    }
  });

  it('manages only names some include matches', () => {
    const config = managed({ include: ['eth*', 'enp?s0'] });
    expect(isManagedName(config, 'eth1')).toBe(true);
    expect(isManagedName(config, 'enp3s0')).toBe(true);
    expect(isManagedName(config, 'enp10s0')).toBe(false);
    expect(isManagedName(config, 'wlan0')).toBe(false);
    expect(isManagedName(managed({ include: [] }), 'eth0')).toBe(false);
  });

  it('lets an exclude win over an include', () => {
    const config = managed({ include: ['eth*'], exclude: ['eth9'] });
    expect(isManagedName(config, 'eth0')).toBe(true);
    expect(isManagedName(config, 'eth9')).toBe(false);
  });

  it('uses a configured exclude list instead of the defaults', () => {
    const config = parseConfig('interfaces:\n  exclude: ["eth9"]\n', FILE);
    expect(isManagedName(config, 'docker0')).toBe(true);
    expect(isManagedName(config, 'eth9')).toBe(false);
    expect(isManagedName(parseConfig('interfaces: {exclude: []}\n', FILE), 'veth0')).toBe(true);
  });
});

describe('host keys', () => {
  it('reject a prefix with host bits set, naming the prefix meant', () => {
    expect(problemOf('exceptions: ["198.51.100.1/24"]')).toBe(
      '1: exceptions[0]: expected an IP prefix such as "169.254.169.254/32" or "2001:db8::/32", got "198.51.100.1/24" (host bits are set: did you mean 198.51.100.0/24?)',
    );
    expect(problemOf('exceptions: ["198.51.100.0/33"]')).toMatch(/exceptions\[0\].*\(the length must be 0\.\.32\)$/);
    expect(problemOf('exceptions: [metadata]')).toMatch(/exceptions\[0\]: expected an IP prefix/);
    expect(problemOf('exceptions: 169.254.169.254')).toMatch(/exceptions: expected a list of items, got "169.254.169.254"/);
  });

  it('reject priorities 1..5 and 32604..32765: the rules take the five below it and the 162 after it', () => {
    expect(problemOf('rule: {priority: 1}')).toBe(
      "1: rule.priority: expected an integer 6..32603, got 1 (symroute's rules take the 5 priorities below it, and 0 is the local table's)",
    );
    expect(problemOf('rule: {priority: 5}')).toMatch(/got 5 \(symroute's rules take the 5 priorities below it/);
    expect(problemOf('rule: {priority: 32765}')).toBe(
      "1: rule.priority: expected an integer 6..32603, got 32765 (symroute's rules take the 162 after it, and 32766 is the main table's)",
    );
    expect(problemOf('rule: {priority: 32604}')).toMatch(/got 32604 \(symroute's rules take the 162 after it/);
  });

  it('reject a relative iproute2 directory and an unknown sysctl mode', () => {
    expect(problemOf('iproute2_dir: etc/iproute2')).toMatch(/iproute2_dir: expected auto, false or an absolute directory/);
    expect(problemOf('sysctl: fix')).toBe('1: sysctl: expected one of "report", "manage", got "fix"');
    expect(problemOf('container_routes: yes please')).toBe('1: container_routes: expected true or false, got "yes please"');
  });
});
