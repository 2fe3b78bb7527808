// What every packet pays for symroute's rules: unconnected UDP sends, timed one by one, in a
// namespace laid out by the real daemon (`symroute run --once`) with 0, 100 and 1000 managed
// addresses plus 200 pods (/32 routes on an excluded device, so one `to <pod> lookup main`
// rule each), against the same namespace with no rules, all interleaved in one run.
//
// Per configuration three namespaces: a router (the layout under test), a sender behind it
// and a sink. Two paths:
//   local:     the router sends (its own output lookup walks its rules);
//   forwarded: the sender sends through the router, whose input lookup walks its rules in
//              the softirq the send itself runs, so the send's time includes it.
// Two sources per path: one symroute does not manage, and the managed address whose packets
// walk the most rules before reaching their own `from` rule, found by playing the kernel's
// walk over the rule dump (with the flat layout, the rule listed last at rule.priority; with
// the tree, the last rule of the fullest leaf in the fullest branch); its table holds only
// its own /24, so the lookup goes on to main. Every destination is 198.51.100.9, behind a permanent
// neighbour entry whose MAC no one holds, so the sink drops the frame on arrival and no ARP
// or ICMP takes part. Run as root: `npx vite-node test/bench/per-packet.ts`.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockList } from 'node:net';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { NetnsLab } from '../../src/lab/netns.js';
import { CLI, REPO } from './daemon.js';
import { num, spread, type Spread } from './figures.js';
import { ipBatch, type JsonRule } from './world.js';

const run = promisify(execFile);
const SIZES = [0, 100, 1000] as const;
const BARE = 1000; // the no-rules namespace holds the largest configuration's addresses
const PODS = 200;
const ADDRESSES_PER_NIC = 100;
const ROUNDS = 40;
const SENDS_PER_BATCH = 8_000;
const DESTINATION = '198.51.100.9';
const SINK_MAC = '02:00:00:00:00:09'; // nobody's: the sink drops the frame as PACKET_OTHERHOST
const ROUTER_MAC = '02:00:00:00:00:01';
const ROUTER_IN = '203.0.113.1'; // the router's unmanaged local source
const SENDER = '203.0.113.2'; // the forwarded unmanaged source
const SENDER_SCRIPT = join(REPO, 'test/bench/udp-sends.py');
const BEGIN = '<!-- per-packet: written by test/bench/per-packet.ts -->';
const END = '<!-- /per-packet -->';

const dir = mkdtempSync(join(tmpdir(), 'symroute-per-packet-'));
const lab = new NetnsLab('spp');
const senders: Sender[] = [];

interface Host {
  readonly label: string;
  readonly addresses: number; // managed addresses (the bare host holds as many, unmanaged)
  readonly router: string;
  readonly sender: string;
  readonly rules: number; // rules in the router (IPv4), the kernel's three included
  /** The managed address whose rule comes last, for hosts with symroute's rules. */
  readonly lastManaged?: string;
}

type Path = 'local' | 'forwarded';

interface Case {
  readonly path: Path;
  readonly host: Host;
  readonly source: string;
  readonly kind: 'unmanaged' | 'managed, longest walk';
  readonly reference?: Case;
  readonly sender: Sender;
  readonly means: number[];
  readonly p50s: number[];
  readonly p99s: number[];
  readonly ratios: number[];
}

/** One udp-sends.py process in a namespace, told per line how many sends to make. */
class Sender {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;
  private stderr = '';

  constructor(ns: string, source: string) {
    this.child = spawn('ip', ['netns', 'exec', ns, 'python3', SENDER_SCRIPT, source, DESTINATION, '9']);
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async line(): Promise<string> {
    const next = await this.lines.next();
    if (next.done) throw new Error(`udp-sends.py ended: ${this.stderr}`);
    return next.value;
  }

  async ready(): Promise<void> {
    const line = await this.line();
    if (line !== 'ready') throw new Error(`udp-sends.py said ${line}: ${this.stderr}`);
  }

  async batch(count: number): Promise<{ mean: number; p50: number; p99: number }> {
    this.child.stdin.write(`${count}\n`);
    return JSON.parse(await this.line()) as { mean: number; p50: number; p99: number };
  }

  stop(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

const ipv4 = (n: number): string => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
/** Managed address j: NIC eth<j/100>'s /24 in 198.18.0.0/16, from .1 up. */
const managedAddress = (j: number) => `198.18.${Math.floor(j / ADDRESSES_PER_NIC)}.${(j % ADDRESSES_PER_NIC) + 1}`;
/**
 * Pod j: a /32 in 198.19.0.0/16 routed through the plumbing device cali0, every other
 * address, so that symroute cannot merge their rules (pods in a row would be 3 rules).
 */
const podAddress = (j: number) => ipv4((198 << 24) + (19 << 16) + (1 << 8) + 2 * j);

async function buildHost(label: string, addresses: number, withSymroute: boolean): Promise<Host> {
  const router = await lab.namespace(`${label}r`);
  const sender = await lab.namespace(`${label}s`);
  const sink = await lab.namespace(`${label}k`);
  // Before any link exists, so every one inherits them: the router forwards, the sender's
  // managed address arrives as a source the router holds itself.
  await lab.sysctl(
    router,
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
    'net.ipv4.conf.all.accept_local=1',
    'net.ipv4.conf.default.accept_local=1',
  );
  await lab.ip(router, 'link', 'add', 'in0', 'address', ROUTER_MAC, 'type', 'veth', 'peer', 'name', 'f0', 'netns', sender);
  await lab.ip(router, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'k0', 'netns', sink);
  await lab.ip(sender, 'link', 'set', 'f0', 'up');
  await lab.ip(sink, 'link', 'set', 'k0', 'up');
  const lines = [
    'link set in0 up',
    'link set up0 up',
    `addr add ${ROUTER_IN}/24 dev in0`,
    'addr add 198.51.100.1/24 dev up0',
    `neigh add ${DESTINATION} lladdr ${SINK_MAC} dev up0 nud permanent`,
    'link add cali0 type ifb',
    'link set cali0 up',
  ];
  for (let j = 0; j < PODS; j++) lines.push(`route add ${podAddress(j)}/32 dev cali0`);
  for (let nic = 0; nic * ADDRESSES_PER_NIC < addresses; nic++) lines.push(`link add eth${nic} type ifb`, `link set eth${nic} up`);
  for (let j = 0; j < addresses; j++) lines.push(`addr add ${managedAddress(j)}/24 dev eth${Math.floor(j / ADDRESSES_PER_NIC)}`);
  await ipBatch(router, lines, dir, 'router');
  await ipBatch(
    sender,
    [`addr add ${SENDER}/24 dev f0`, `neigh add ${ROUTER_IN} lladdr ${ROUTER_MAC} dev f0 nud permanent`, `route add 198.51.100.0/24 via ${ROUTER_IN} dev f0`],
    dir,
    'sender',
  );
  if (withSymroute) {
    const config = join(dir, 'symroute.yaml');
    writeFileSync(config, `interfaces:\n  include: ["eth*"]\nmetrics:\n  listen: false\niproute2_dir: false\nlog:\n  level: warn\n`);
    await run('ip', ['netns', 'exec', router, process.execPath, CLI, 'run', '--once', '--config', config], { maxBuffer: 1 << 26 });
  }
  const rules = JSON.parse(await lab.ip(router, '-N', '-json', '-4', 'rule', 'show')) as JsonRule[];
  const lastManaged = longestWalk(rules);
  return { label, addresses, router, sender, rules: rules.length, ...(lastManaged !== undefined ? { lastManaged } : {}) };
}

/** Whether a rule's selectors match a packet from `src` to DESTINATION (ip omits a full length). */
function matches(rule: JsonRule, src: string): boolean {
  const inside = (network: string | undefined, length: number | undefined, address: string) => {
    if (network === undefined || network === 'all') return true;
    const block = new BlockList();
    block.addSubnet(network, length ?? 32, 'ipv4');
    return block.check(address, 'ipv4');
  };
  return inside(rule.src, rule.srclen, src) && inside(rule.dst, rule.dstlen, DESTINATION);
}

/**
 * The managed address whose packets walk the most rules before their own `from` rule: the
 * kernel's walk (rules in its order, a matching goto jumps to the first rule of its target)
 * played over the dump for each of symroute's `from` rules.
 */
function longestWalk(rules: readonly JsonRule[]): string | undefined {
  const own = rules.filter((r) => r.protocol === '83' && r.src !== undefined && r.goto === undefined && r.table !== undefined);
  let worst: { src: string; evaluated: number } | undefined;
  for (const target of own) {
    let evaluated = 0;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      evaluated++;
      if (rule === target) break;
      if (rule.goto !== undefined && matches(rule, target.src!)) {
        const landing = rules.findIndex((r) => r.priority === rule.goto);
        if (landing > i) i = landing - 1;
      }
    }
    if (!worst || evaluated > worst.evaluated) worst = { src: target.src!, evaluated };
  }
  return worst?.src;
}

/** The sender's copy of a managed address, so forwarded packets can come from it. */
async function lendAddress(host: Host, address: string): Promise<void> {
  await lab.ip(host.sender, 'addr', 'add', `${address}/32`, 'dev', 'f0');
}

function newCase(path: Path, host: Host, source: string, kind: Case['kind'], reference?: Case): Case {
  const sender = new Sender(path === 'local' ? host.router : host.sender, source);
  senders.push(sender);
  return { path, host, source, kind, ...(reference ? { reference } : {}), sender, means: [], p50s: [], p99s: [], ratios: [] };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const load = loadavg();
  const build = JSON.parse(readFileSync(join(REPO, 'dist/build-info.json'), 'utf8')) as { commit?: string };
  console.log('building the namespaces and running symroute --once in them …');
  const bare = await buildHost('bare', BARE, false);
  const hosts = [];
  for (const size of SIZES) hosts.push(await buildHost(`n${size}`, size, true));
  for (const host of hosts) if (host.lastManaged) await lendAddress(host, host.lastManaged), await lendAddress(bare, host.lastManaged);

  const cases: Case[] = [];
  for (const path of ['local', 'forwarded'] as const) {
    const unmanaged = path === 'local' ? ROUTER_IN : SENDER;
    const bareUnmanaged = newCase(path, bare, unmanaged, 'unmanaged');
    cases.push(bareUnmanaged);
    for (const host of hosts) {
      cases.push(newCase(path, host, unmanaged, 'unmanaged', bareUnmanaged));
      if (host.lastManaged) {
        const reference = newCase(path, bare, host.lastManaged, 'managed, longest walk');
        cases.push(reference, newCase(path, host, host.lastManaged, 'managed, longest walk', reference));
      }
    }
  }
  await Promise.all(cases.map((c) => c.sender.ready()));
  for (const c of cases) await c.sender.batch(SENDS_PER_BATCH); // warm-up: caches, neighbour entries

  // Each case runs right next to its reference (which goes first alternates by round), so a
  // pair shares the machine's load of that moment; the pairs take turns, starting each round
  // at another one. A reference is measured once per case it is the reference of.
  const pairs = cases.filter((c) => c.reference);
  console.log(`${pairs.length} pairs, ${ROUNDS} rounds of ${SENDS_PER_BATCH} sends per case, interleaved`);
  const measure = async (c: Case) => {
    const answer = await c.sender.batch(SENDS_PER_BATCH);
    c.means.push(answer.mean);
    c.p50s.push(answer.p50);
    c.p99s.push(answer.p99);
    return answer.mean;
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < pairs.length; i++) {
      const c = pairs[(i + round) % pairs.length]!;
      const [first, second] = round % 2 ? [c, c.reference!] : [c.reference!, c];
      const means = new Map([[first, await measure(first)], [second, await measure(second)]]);
      c.ratios.push(means.get(c)! / means.get(c.reference!)!);
    }
  }

  const rows = cases.map((c) => ({ c, means: spread(c.means), p50: spread(c.p50s).median, p99: spread(c.p99s).median, ratio: c.ratios.length ? spread(c.ratios) : undefined }));
  for (const { c, means, ratio } of rows) {
    console.log(`${c.path} · ${c.host.label} (${c.host.rules} rules) · ${c.kind} ${c.source}: ${num(means.min)}/${num(means.median)}/${num(means.max)} µs${ratio ? `  ratio ${num(ratio.min)}/${num(ratio.median)}/${num(ratio.max)}×` : ''}`);
  }
  writeSection({ startedAt, load, commit: build.commit ?? 'unknown', rows, seconds: (Date.now() - startedAt.getTime()) / 1000 });
}

interface Row {
  readonly c: Case;
  readonly means: Spread;
  readonly p50: number;
  readonly p99: number;
  readonly ratio: Spread | undefined;
}

const GOALS: Record<Case['kind'], { readonly atMost: number; readonly text: string }> = {
  unmanaged: { atMost: 1.1, text: '≤ 1.1×' },
  'managed, longest walk': { atMost: 1.5, text: '≤ 1.5×' },
};

function writeSection(run: { startedAt: Date; load: number[]; commit: string; rows: readonly Row[]; seconds: number }): void {
  const table = [
    '| path | managed addresses (+ 200 pods) | rules in the router | source | µs per send (min / **median** / max of batch means) | p50 / p99 µs | vs no rules (per round: min / **median** / max) | goal at 1000 |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const { c, means, p50, p99, ratio } of run.rows) {
    const goal = GOALS[c.kind];
    const judged = ratio && c.host.addresses === 1000 && c.host.label !== 'bare' ? `${goal.text}: ${ratio.median <= goal.atMost ? 'PASS' : 'MISS'}` : '';
    table.push(
      [
        '',
        c.path,
        c.host.label === 'bare' ? `none: no rules (${c.host.addresses} addresses, unmanaged)` : String(c.host.addresses),
        String(c.host.rules),
        `${c.kind} (${c.source})`,
        `${num(means.min)} / **${num(means.median)}** / ${num(means.max)}`,
        `${num(p50)} / ${num(p99)}`,
        ratio ? `${num(ratio.min)} / **${num(ratio.median)}** / ${num(ratio.max)}×` : '(reference)',
        judged,
        '',
      ]
        .join(' | ')
        .trim(),
    );
  }
  const generated = [
    BEGIN,
    '## What every packet pays',
    '',
    'The kernel walks policy rules one by one for every route lookup: a locally sent packet and every',
    'forwarded one. `test/bench/per-packet.ts` (`npm run bench` runs it last) builds, per row group, a',
    'router namespace with N managed addresses (100 per NIC, one /24 each) and 200 pods (/32 routes',
    'through the excluded `cali0`, every other address, so 200 `to` rules that cannot be merged), lays',
    'it out with `symroute run --once`, and times unconnected UDP',
    '`sendto`s one by one (a Python loop; the mean includes its timer) from a source symroute does not',
    'manage and from the managed address whose packets walk the most rules before their own `from`',
    'rule (the kernel\'s walk played over the rule dump: with 1000 addresses, in the tree of `from`',
    'rules, the last rule of the fullest leaf in the fullest branch); once sent by the router',
    'itself (local), once by a sender behind it and forwarded (the router\'s input lookup runs in',
    'the send\'s own softirq, so the send\'s time includes it). The reference is the same host with',
    `no rules, in the same run: each case runs right next to its reference, the pairs take turns,`,
    `${ROUNDS} rounds of ${SENDS_PER_BATCH} sends per case, and the ratio is taken pair by pair. p50 and p99 are per send,`,
    'the median over the rounds. With 0 managed addresses symroute installs nothing, so that row',
    "is the run's own noise: its ratio should be 1.0×.",
    '',
    `Measured ${run.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC (${run.seconds.toFixed(0)} s), symroute built from ${run.commit.slice(0, 7)}:`,
    `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}, Linux ${release()}, load average ${run.load.map((l) => l.toFixed(2)).join(' / ')} at start.`,
    '',
    ...table,
    END,
  ].join('\n');
  const path = join(REPO, 'BENCHMARKS.md');
  const text = readFileSync(path, 'utf8');
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin >= 0 && end < begin) throw new Error(`BENCHMARKS.md has ${BEGIN} without ${END}`);
  const next = begin < 0 ? `${text.trimEnd()}\n\n${generated}\n` : text.slice(0, begin) + generated + text.slice(end + END.length);
  writeFileSync(path, next);
  console.log('wrote the per-packet section of BENCHMARKS.md');
}

const stop = () => void cleanUp().then(() => process.exit(130));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

async function cleanUp(): Promise<void> {
  for (const sender of senders.splice(0)) sender.stop();
  await lab.removeNamespaces();
  rmSync(dir, { recursive: true, force: true });
}

try {
  await main();
} finally {
  await cleanUp();
}
