// The YAML config file. Everything has a default, so the file is optional; when it exists,
// every problem in it is reported at once, each as `file:line: key.path: message`, so an admin
// can fix the file in one pass.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import {
  isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, Scalar, visit, type Document,
} from 'yaml';
import { z } from 'zod';
import { DEFAULT_CONFIG_PATH, LOG_LEVELS, type LogLevel } from './defaults.js';
import { canonicalAddress, familyOf, networkOf } from '../net/ip.js';
import { globProblem } from './glob.js';

export { DEFAULT_CONFIG_PATH, LOG_LEVELS, type LogLevel };

const RULE_MATCHES = ['address', 'prefix'] as const;
const ON_EXIT = ['keep', 'remove'] as const;
const SYSCTL_MODES = ['report', 'manage'] as const;

export type OnExit = (typeof ON_EXIT)[number];
export type SysctlMode = (typeof SYSCTL_MODES)[number];
export interface Gateway {
  ipv4?: string;
  ipv6?: string;
}

export interface Config {
  interfaces: { include: string[]; exclude: string[] };
  table: { base: number; pinned: Record<string, number> };
  rule: { priority: number; match: (typeof RULE_MATCHES)[number] };
  gateways: Record<string, Gateway>;
  /** Destinations always routed by the main table, whatever the source: `to <prefix> lookup main`. */
  exceptions: string[];
  /** Keep main's routes through excluded plumbing (containers, VMs, tunnels) reachable from every source. */
  containerRoutes: boolean;
  /** ARP and reverse-path sysctls of NICs sharing a subnet: only reported, or also set. */
  sysctl: SysctlMode;
  /** Where rt_tables.d/ and rt_protos.d/ get symroute's names; auto: /etc/iproute2 in the host's namespace only. */
  iproute2Dir: string | false | 'auto';
  protocol: number;
  onExit: OnExit;
  log: { level: LogLevel };
  metrics: { listen: ListenAddress | false };
  /** Reply paths are verified after each pass, and all of them every `interval` seconds (false: never on a timer). */
  verify: { interval: number | false };
}

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Virtual plumbing that is never an uplink: container, VM and overlay devices, VPN tunnels, and
 * the catch-all devices the tunnel modules create. Bonds, bridges named by the admin and VLANs
 * are left managed because they usually are the uplinks.
 */
export const DEFAULT_EXCLUDE: readonly string[] = Object.freeze([
  'docker*', 'veth*', 'br-*', 'virbr*', 'podman*', 'cni*', 'cali*', 'flannel*', 'cilium*', 'kube-*',
  'lxc*', 'vnet*', 'vxlan*', 'genev_sys_*', 'ovs-system', 'tun*', 'tap*', 'wg*', 'tailscale*', 'zt*',
  'ifb*', 'dummy*', 'sit0', 'gre0', 'gretap0', 'erspan0', 'ip_vti0', 'ip6_vti0', 'ip6tnl0', 'ip6gre0',
  // AWS VPC CNI pod veths, Weave, LXD/Incus bridges, Kubernetes' node-local DNS.
  'eni*', 'weave', 'lxdbr*', 'incusbr*', 'nodelocaldns',
]);


export function defaultConfig(): Config {
  return {
    interfaces: { include: ['*'], exclude: [...DEFAULT_EXCLUDE] },
    table: { base: 1000, pinned: {} },
    rule: { priority: 30000, match: 'address' },
    gateways: {},
    // None: a `to` rule takes a destination away from every NIC's table, so only the admin,
    // who knows the platform's endpoints, can say which (README, "Platform endpoints").
    exceptions: [],
    containerRoutes: true,
    sysctl: 'report',
    iproute2Dir: 'auto',
    protocol: 83,
    onExit: 'keep',
    log: { level: 'info' },
    metrics: { listen: { host: '127.0.0.1', port: 9477 } },
    verify: { interval: 60 },
  };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

/**
 * A config is a few hundred bytes; a megabyte is already absurd. Reading and parsing a much
 * larger file (a mistake, or a log written over it) would block the daemon for seconds and
 * take gigabytes — long enough for systemd's watchdog to kill it during a reload.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/**
 * How many nodes YAML aliases (`*name`) may expand to. A config needs few if any; aliases of
 * aliases multiply (the "billion laughs" attack) and are refused before they are expanded.
 */
export const MAX_ALIAS_COUNT = 100;

export function loadConfig(path: string | undefined, options: { defaultPath?: string } = {}): Config {
  const file = path ?? options.defaultPath ?? DEFAULT_CONFIG_PATH;
  let bytes: Buffer | null;
  try {
    bytes = readConfigBytes(file);
  } catch (err) {
    // Running without a config file is fine, but a file the admin named has to be there.
    if (path === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') return defaultConfig();
    const reason = (err as Error).message.replace(/, \w+( '.*')?$/, ''); // drop the syscall and path
    throw new ConfigError([`${file}: cannot read config: ${reason}`]);
  }
  if (bytes === null) {
    throw new ConfigError([`${file}: config is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB), the most symroute reads`]);
  }
  return parseConfig(decodeUtf8(bytes, file), file);
}

/** The file's bytes, or null when it is larger than MAX_CONFIG_BYTES (then it is not read). */
export function readConfigBytes(file: string): Buffer | null {
  const limit = MAX_CONFIG_BYTES;
  const fd = openSync(file, 'r');
  try {
    // The size first, so that an oversize file is refused without reading any of it.
    if (fstatSync(fd).size > limit) return null;
    // Then read with a bound anyway: the file may grow meanwhile, or be one whose size stat
    // cannot tell (a pipe, /proc).
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length < buffer.length; length += n) {
      n = readSync(fd, buffer, length, buffer.length - length, null);
    }
    return length > limit ? null : buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/**
 * The file as text; bytes that are not UTF-8 are an error naming their line (a Latin-1 "ä"
 * must not silently become U+FFFD and then match the wrong interface names).
 */
function decodeUtf8(bytes: Buffer, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const bad = firstInvalidUtf8(bytes);
    const lineStart = bytes.lastIndexOf(0x0a, bad - 1) + 1;
    let line = 1;
    for (let i = bytes.indexOf(0x0a); i >= 0 && i < bad; i = bytes.indexOf(0x0a, i + 1)) line++;
    const byte = bytes[bad]!.toString(16).padStart(2, '0');
    throw new ConfigError([
      `${file}:${line}: not valid UTF-8 (byte 0x${byte} at byte ${bad - lineStart + 1} of the line); save the file as UTF-8`,
    ]);
  }
}

/** Where the first malformed UTF-8 sequence starts (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i]!;
    const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length === 0) return i;
    // The second byte's range is what excludes overlong forms, surrogates and > U+10FFFF.
    const [low, high] = lead === 0xe0 ? [0xa0, 0xbf] : lead === 0xed ? [0x80, 0x9f] : lead === 0xf0 ? [0x90, 0xbf] : lead === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    for (let k = 1; k < length; k++) {
      const next = bytes[i + k];
      if (next === undefined || next < (k === 1 ? low : 0x80) || next > (k === 1 ? high : 0xbf)) return i;
    }
    i += length;
  }
  return bytes.length; // not reached for bytes a fatal TextDecoder refused
}

export function parseConfig(text: string, fileName: string): Config {
  const lines = new LineCounter();
  // Duplicate keys are reported by the walker, which can name the key and its first line.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length > 0) {
    // The tree of a document that failed to parse is a guess; validating it would add noise.
    throw new ConfigError(
      doc.errors.map((e) => `${fileName}:${lines.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`),
    );
  }
  const aliasProblem = aliasLimitProblem(doc, lines, fileName);
  if (aliasProblem) throw new ConfigError([aliasProblem]);

  const w = new Walker(doc, fileName, lines);
  const config = defaultConfig();
  w.section(doc.contents, '', {
    interfaces: (node, path) =>
      w.section(node, path, {
        include: w.globs((globs) => (config.interfaces.include = globs)),
        exclude: w.globs((globs) => (config.interfaces.exclude = globs)),
      }),
    table: (node, path) =>
      w.section(node, path, {
        base: w.leaf(TABLE_BASE, (base) => (config.table.base = base)),
        pinned: (node, path) => (config.table.pinned = pinnedTables(w, node, path)),
      }),
    rule: (node, path) =>
      w.section(node, path, {
        priority: w.leaf(PRIORITY, (priority) => (config.rule.priority = priority)),
        match: w.leaf(oneOf(RULE_MATCHES), (match) => (config.rule.match = match)),
      }),
    gateways: (node, path) => (config.gateways = gateways(w, node, path)),
    exceptions: w.list(PREFIX, (prefixes) => (config.exceptions = prefixes)),
    container_routes: w.leaf(BOOLEAN, (on) => (config.containerRoutes = on)),
    sysctl: w.leaf(oneOf(SYSCTL_MODES), (mode) => (config.sysctl = mode)),
    iproute2_dir: w.leaf(IPROUTE2_DIR, (dir) => (config.iproute2Dir = dir)),
    protocol: w.leaf(PROTOCOL, (protocol) => (config.protocol = protocol)),
    on_exit: w.leaf(oneOf(ON_EXIT), (onExit) => (config.onExit = onExit)),
    log: (node, path) =>
      w.section(node, path, { level: w.leaf(oneOf(LOG_LEVELS), (level) => (config.log.level = level)) }),
    metrics: (node, path) =>
      w.section(node, path, { listen: w.leaf(LISTEN, (listen) => (config.metrics.listen = listen)) }),
    verify: (node, path) =>
      w.section(node, path, { interval: w.leaf(VERIFY_INTERVAL, (interval) => (config.verify.interval = interval)) }),
  });
  if (w.problems.length > 0) throw new ConfigError(w.problems);
  return config;
}

/** yaml counts what aliases expand to as it renders the document, and stops at the limit. */
function aliasLimitProblem(doc: Document, lines: LineCounter, fileName: string): string | undefined {
  try {
    // mapAsMap: a key that is itself a mapping or list is not to be stringified (with a warning).
    doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT, mapAsMap: true });
    return undefined;
  } catch (error) {
    if (!(error instanceof ReferenceError)) throw error;
    let first: number | undefined;
    visit(doc, { Alias: (_key, node) => ((first ??= node.range?.[0]), visit.BREAK) });
    return (
      `${fileName}:${lines.linePos(first ?? 0).line}: YAML aliases expand to more than ${MAX_ALIAS_COUNT} nodes ` +
      '(aliases of aliases multiply); write the values out instead'
    );
  }
}

function pinnedTables(w: Walker, node: unknown, path: string): Record<string, number> {
  const pinned: [string, number][] = [];
  w.interfaces(node, path, (name, value, valuePath) =>
    w.leaf(TABLE_ID, (table) => {
      const clash = pinned.find(([, t]) => t === table);
      if (clash) w.report(value, valuePath, `table ${table} is already pinned to ${clash[0]}`);
      pinned.push([name, table]);
    })(value, valuePath),
  );
  // fromEntries, unlike assignment, keeps a name such as "__proto__" an ordinary key.
  return Object.fromEntries(pinned);
}

function gateways(w: Walker, node: unknown, path: string): Record<string, Gateway> {
  const found: [string, Gateway][] = [];
  w.interfaces(node, path, (name, value, valuePath) => {
    const gateway: Gateway = {};
    w.section(value, valuePath, {
      ipv4: w.leaf(IPV4, (address) => (gateway.ipv4 = address)),
      ipv6: w.leaf(IPV6, (address) => (gateway.ipv6 = address)),
    });
    found.push([name, gateway]);
  });
  return Object.fromEntries(found);
}

type Check<T> = (value: unknown) => { ok: true; value: T } | { ok: false; problem: string };

/** A check whose failure reads `expected <expected>, got <value> (<note>)`. */
function expect<T>(
  schema: z.ZodType<T>,
  expected: string,
  note: (value: unknown) => string | undefined = () => undefined,
): Check<T> {
  return (value) => {
    const parsed = schema.safeParse(value);
    if (parsed.success) return { ok: true, value: parsed.data };
    const why = note(value);
    const problem = `expected ${expected}, got ${describe(value)}`;
    return { ok: false, problem: why ? `${problem} (${why})` : problem };
  };
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T): Check<T[number]> {
  return expect(z.enum(values), `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
}

const integer = (min: number, max: number) => z.int().min(min).max(max);
const MAX_TABLE = 0xffff_ffff;
// Tables are base + ifindex, so leave room for any ifindex the kernel is likely to hand out.
const MAX_TABLE_BASE = MAX_TABLE - 65536;

// Below 256 base + ifindex would run into the kernel's tables (253-255) and the small ids
// admins traditionally list in rt_tables.
const TABLE_BASE = expect(integer(256, MAX_TABLE_BASE), `an integer 256..${MAX_TABLE_BASE}`);

const RESERVED_TABLES = new Map<unknown, string>([
  [253, "the kernel's default table"],
  [254, "the kernel's main table"],
  [255, "the kernel's local table"],
]);
const TABLE_ID = expect(
  integer(1, MAX_TABLE).refine((table) => !RESERVED_TABLES.has(table)),
  `a table id 1..${MAX_TABLE} other than 253-255`,
  (value) => RESERVED_TABLES.get(value),
);

const RESERVED_PRIORITIES = new Map<unknown, string>([
  [0, "the kernel's local-table rule"],
  [32766, "the kernel's main-table rule"],
  [32767, "the kernel's default-table rule"],
]);
// symroute's rules take priority - 5 .. priority + 162 (src/domain/rule-skips.ts: the tree of
// `from` rules and its landing above P), all of them after the local table's 0 and before
// main's 32766.
const PRIORITY = expect(integer(6, 32603), 'an integer 6..32603', (value) => {
  if (typeof value === 'number' && value >= 1 && value <= 5) return "symroute's rules take the 5 priorities below it, and 0 is the local table's";
  if (typeof value === 'number' && value >= 32604 && value <= 32765) return "symroute's rules take the 162 after it, and 32766 is the main table's";
  return RESERVED_PRIORITIES.get(value);
});

const BOOLEAN = expect(z.boolean(), 'true or false');

const IPROUTE2_DIR = expect(
  z.union([z.literal(false), z.literal('auto'), z.string().trim().regex(/^\//)]),
  'auto, false or an absolute directory such as "/etc/iproute2"',
);

/** `198.51.100.0/24`, `2001:db8::/32` or a bare address; canonical, host bits must be clear. */
const PREFIX = expect(
  z.string().trim().refine(isPrefix).transform(canonicalPrefix),
  'an IP prefix such as "169.254.169.254/32" or "2001:db8::/32"',
  (value) => (typeof value === 'string' ? prefixProblem(value.trim()) : undefined),
);

function prefixProblem(text: string): string | undefined {
  const [address = '', length, ...rest] = text.split('/');
  const family = familyOf(address);
  if (!family || rest.length > 0) return undefined;
  const full = family === 4 ? 32 : 128;
  if (length !== undefined && !(/^\d{1,3}$/.test(length) && Number(length) <= full)) return `the length must be 0..${full}`;
  const bits = length === undefined ? full : Number(length);
  if (networkOf(address, bits) !== canonicalAddress(address)) return `host bits are set: did you mean ${networkOf(address, bits)}/${bits}?`;
  return undefined;
}

function canonicalPrefix(text: string): string {
  const [address = '', length] = text.split('/');
  return `${canonicalAddress(address)}/${length === undefined ? (familyOf(address) === 4 ? 32 : 128) : Number(length)}`;
}

/** Whether prefixProblem() accepts the text as a whole: an address, optionally /length. */
function isPrefix(text: string): boolean {
  const [address = '', , ...rest] = text.split('/');
  return familyOf(address) !== undefined && rest.length === 0 && prefixProblem(text) === undefined;
}

const VERIFY_INTERVAL = expect(
  z.union([z.literal(false), z.number().min(1).max(86_400)]),
  'seconds 1..86400, or false for no periodic sweep',
);

const PROTOCOL = expect(integer(5, 255), 'an integer 5..255', (value) =>
  integer(0, 4).safeParse(value).success ? '0-4 are reserved by the kernel' : undefined,
);

const IPV4 = expect(z.string().trim().refine(isIPv4), 'an IPv4 literal', (value) =>
  typeof value === 'string' && isIPv6(value.trim()) ? 'an IPv6 address belongs under ipv6' : undefined,
);
const IPV6 = expect(
  // The route's device already scopes a link-local gateway, and netlink has no room for a zone.
  z.string().trim().refine((address) => isIPv6(address) && !address.includes('%')),
  'an IPv6 literal',
  (value) => {
    if (typeof value !== 'string') return undefined;
    if (isIPv4(value.trim())) return 'an IPv4 address belongs under ipv4';
    if (value.includes('%')) return 'leave out the zone index: the interface implies it';
    return undefined;
  },
);

// `127.0.0.1:9477`, `[::1]:9477`, or false to serve no metrics at all.
const LISTEN_PATTERN = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/;
const LISTEN = expect(
  z.union([
    z.literal(false),
    z
      .string()
      .trim()
      .regex(LISTEN_PATTERN)
      .transform((text) => {
        const [, bracketed, plain, port] = LISTEN_PATTERN.exec(text)!;
        return { host: (bracketed ?? plain)!, port: Number(port) };
      })
      .refine(({ host, port }) => port >= 1 && port <= 65535 && (isIPv4(host) || isIPv6(host))),
  ]),
  'false or an IP address and port such as "127.0.0.1:9477" or "[::1]:9477"',
);

const GLOB = expect(
  z.string().min(1).refine((glob) => globProblem(glob) === undefined),
  'a non-empty glob string',
  (value) => (typeof value === 'string' ? globProblem(value) : undefined),
);

function isInterfaceName(name: string): boolean {
  // The kernel's dev_valid_name(): IFNAMSIZ including the NUL, and nothing that breaks sysfs paths.
  const length = Buffer.byteLength(name);
  return length >= 1 && length <= 15 && name !== '.' && name !== '..' && !/[\s/:]/.test(name);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (isMap(value)) return 'a mapping';
  if (isSeq(value)) return 'a list';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

type Field = (node: unknown, path: string) => void;
type Entry = { name: string; path: string; key: Scalar; value: unknown };

/** Walks the YAML tree (not its plain-JS rendering) so every problem can name its line. */
class Walker {
  readonly problems: string[] = [];

  constructor(
    private readonly doc: Document,
    private readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  report(node: unknown, path: string, message: string): void {
    const line = this.lines.linePos(isNode(node) && node.range ? node.range[0] : 0).line;
    this.problems.push(`${this.file}:${line}: ${path ? `${path}: ` : ''}${message}`);
  }

  section(node: unknown, path: string, fields: Record<string, Field>): void {
    for (const entry of this.entries(node, path)) {
      const field = Object.hasOwn(fields, entry.name) ? fields[entry.name] : undefined;
      if (field) field(entry.value, entry.path);
      else this.report(entry.key, entry.path, `unknown key (known: ${Object.keys(fields).join(', ')})`);
    }
  }

  /** A mapping keyed by interface name; bad names are reported, and their values still checked. */
  interfaces(
    node: unknown,
    path: string,
    each: (name: string, value: unknown, path: string) => void,
  ): void {
    for (const entry of this.entries(node, path)) {
      if (!isInterfaceName(entry.name)) {
        this.report(
          entry.key,
          path,
          `invalid interface name ${JSON.stringify(entry.name)} ` +
            `(1..15 bytes; no '/', ':' or whitespace; not "." or "..")`,
        );
      }
      each(entry.name, entry.value, entry.path);
    }
  }

  leaf<T>(check: Check<T>, set: (value: T) => void): Field {
    return (node, path) => {
      const result = check(this.value(node));
      if (result.ok) set(result.value);
      else this.report(node, path, result.problem);
    };
  }

  globs(set: (globs: string[]) => void): Field {
    return this.list(GLOB, set, 'glob strings');
  }

  /** A list whose every item passes `check`; each bad item is reported with its index. */
  list<T>(check: Check<T>, set: (items: T[]) => void, what = 'items'): Field {
    return (node, path) => {
      const list = this.deref(node);
      if (!isSeq(list)) {
        return this.report(node, path, `expected a list of ${what}, got ${describe(this.value(node))}`);
      }
      const items: T[] = [];
      const add = this.leaf(check, (item) => items.push(item));
      list.items.forEach((item, i) => add(item, `${path}[${i}]`));
      set(items);
    };
  }

  private entries(node: unknown, path: string): Entry[] {
    const map = this.deref(node);
    // A section whose contents are all commented out is empty, not an error.
    if (map === null || map === undefined || (isScalar(map) && map.value === null)) return [];
    if (!isMap(map)) {
      const got = describe(this.value(node));
      this.report(node, path, path ? `expected a mapping, got ${got}` : 'expected a mapping at the top level');
      return [];
    }
    const seen = new Map<string, Scalar>();
    return map.items.flatMap(({ key, value }) => {
      if (!isScalar(key)) {
        this.report(key, path, 'expected a plain key');
        return [];
      }
      // Interface names are text even when they look like numbers, so use the key as written.
      const name = key.source ?? String(key.value);
      const first = seen.get(name);
      if (first) {
        const firstLine = this.lines.linePos(first.range?.[0] ?? 0).line;
        this.report(key, path ? `${path}.${name}` : name, `duplicate key (first on line ${firstLine})`);
        return [];
      }
      seen.set(name, key);
      return [{
        name,
        path: path ? `${path}.${name}` : name,
        key,
        // `{a}` has no value node at all; give it an empty one located at its key.
        value: value ?? Object.assign(new Scalar(null), { range: key.range }),
      }];
    });
  }

  private deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  private value(node: unknown): unknown {
    const resolved = this.deref(node);
    return isScalar(resolved) ? resolved.value : resolved;
  }
}
