// Read-only operator commands: plan, status, explain. Each takes one snapshot of the kernel
// (the same dumps the daemon starts from) and runs the same pure planner and diff, so what
// they print is exactly what `symroute run` would do.
import { isIPv4 } from 'node:net';
import type { Config } from '../config/config.js';
import { computeChanges, type Change } from '../domain/diff.js';
import { canonicalAddress, familyOf, networkOf } from '../domain/ip.js';
import type { Mirror } from '../domain/mirror.js';
import { describeRoute, describeRule, type Rule } from '../domain/model.js';
import { RtnlClient } from '../netlink/client.js';
import { AF_INET, AF_INET6, FR_ACT_TO_TBL, RTM_F_LOOKUP_TABLE, RTM_GETROUTE } from '../netlink/constants.js';
import type { RouteMessage } from '../netlink/messages.js';
import { routeFromMessage } from '../kernel/objects.js';
import { plan, type InterfacePlan, type Plan } from '../domain/planner.js';
import { describeChange } from '../kernel/reconciler.js';
import { dumpMirror } from '../kernel/watcher.js';

interface Snapshot {
  readonly mirror: Mirror;
  readonly plan: Plan;
  readonly phases: Change[][];
  readonly linkName: (ifindex: number) => string;
}

async function withClient<T>(work: (client: RtnlClient) => Promise<T>): Promise<T> {
  const client = new RtnlClient();
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

async function snapshot(config: Config, client: RtnlClient): Promise<Snapshot> {
  const mirror = await dumpMirror(client);
  const desired = plan(config, mirror);
  return {
    mirror,
    plan: desired,
    phases: computeChanges(desired, mirror, config.protocol),
    linkName: (ifindex) => mirror.links.get(ifindex)?.name ?? `if${ifindex}`,
  };
}

/** `+`/`-` lines in ip(8) syntax; a replace shows as the old route going and the new coming. */
function changeLines(change: Change, linkName: (ifindex: number) => string): string[] {
  const text = describeChange(change, linkName);
  if (change.op === 'replace') return [`- route ${describeRoute(change.replaced, linkName)}`, `+ ${text}`];
  return [`${change.op === 'add' ? '+' : '-'} ${text}`];
}

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** `symroute plan`: exit 0 when in sync, 1 when changes are pending. */
export async function planCommand(config: Config, io: Output): Promise<number> {
  return withClient(async (client) => {
    const s = await snapshot(config, client);
    for (const problem of s.plan.problems) io.err(`warning: ${problem}`);
    const lines = s.phases.flat().flatMap((change) => changeLines(change, s.linkName));
    if (lines.length === 0) {
      io.out(`in sync: ${s.plan.interfaces.length} interfaces, ${s.plan.rules.length} rules, ${s.plan.routes.length} routes`);
      return 0;
    }
    for (const line of lines) io.out(line);
    return 1;
  });
}

interface InterfaceStatus {
  name: string;
  ifindex: number;
  table: number;
  inSync: boolean;
  collision?: string;
  families: {
    family: 'ipv4' | 'ipv6';
    addresses: string[];
    gateway: { address: string; source: string } | null;
  }[];
  rules: string[];
  routes: string[];
  pending: string[];
}

/** `symroute status [--json]`: exit 0 when in sync, 1 when not. */
export async function statusCommand(config: Config, json: boolean, io: Output): Promise<number> {
  return withClient(async (client) => {
    const s = await snapshot(config, client);
    const changes = s.phases.flat();
    const tableOf = (change: Change) => (change.kind === 'route' ? change.route.table : change.rule.table);
    const interfaces = s.plan.interfaces.map((i): InterfaceStatus => {
      const pending = changes.filter((c) => tableOf(c) === i.table).flatMap((c) => changeLines(c, s.linkName));
      return {
        name: i.link.name,
        ifindex: i.link.index,
        table: i.table,
        inSync: pending.length === 0 && !i.collision,
        ...(i.collision ? { collision: i.collision } : {}),
        families: i.families.map((f) => ({
          family: f.family === 4 ? 'ipv4' : 'ipv6',
          addresses: f.addresses.map((a) => `${a.address}/${a.prefixLength}`),
          gateway: f.gateway ? { address: f.gateway.address, source: f.gateway.source } : null,
        })),
        rules: s.plan.rules.filter((r) => r.table === i.table).map(describeRule),
        routes: s.plan.routes.filter((r) => r.table === i.table).map((r) => describeRoute(r, s.linkName)),
        pending,
      };
    });
    const unowned = changes.filter((c) => !s.plan.interfaces.some((i: InterfacePlan) => i.table === tableOf(c)));
    const leftovers = unowned.flatMap((c) => changeLines(c, s.linkName));
    const inSync = changes.length === 0 && s.plan.problems.length === 0;
    if (json) {
      io.out(JSON.stringify({ inSync, interfaces, leftovers, problems: s.plan.problems }, null, 2));
      return inSync ? 0 : 1;
    }
    if (interfaces.length === 0) io.out('no managed interfaces');
    for (const i of interfaces) {
      const state = i.collision ? 'left alone (collision)' : i.inSync ? 'in sync' : `${i.pending.length} changes pending`;
      io.out(`${i.name} (ifindex ${i.ifindex}): table ${i.table}, ${state}`);
      for (const f of i.families) {
        const gateway = f.gateway ? `gateway ${f.gateway.address} (from ${f.gateway.source})` : 'no gateway';
        io.out(`  ${f.family}  ${f.addresses.join(' ')}  ${gateway}`);
      }
      for (const rule of i.rules) io.out(`  rule   ${rule}`);
      for (const route of i.routes) io.out(`  route  ${route}`);
      for (const line of i.pending) io.out(`  pending ${line}`);
    }
    for (const line of leftovers) io.out(`pending ${line}`);
    if (s.plan.problems.length > 0) io.out('problems:');
    for (const problem of s.plan.problems) io.out(`  ${problem}`);
    return inSync ? 0 : 1;
  });
}

/**
 * `symroute explain <dst> --from <src>`: asks the kernel which route a reply from `src` to
 * `dst` takes (as `ip route get <dst> from <src>`), names the rule that led there, and says
 * whether it leaves through the NIC that owns `src`. Exit 0 if it does, 1 if not.
 */
export async function explainCommand(config: Config, dstText: string, srcText: string, io: Output): Promise<number> {
  const family = familyOf(dstText);
  if (!family || familyOf(srcText) !== family) {
    io.err(`symroute: explain needs two addresses of one family, got ${JSON.stringify(dstText)} and ${JSON.stringify(srcText)}`);
    return 2;
  }
  // As the kernel prints them, so that 2001:DB8::10 finds 2001:db8::10.
  const dst = canonicalAddress(dstText);
  const src = canonicalAddress(srcText);
  return withClient(async (client) => {
    const mirror = await dumpMirror(client);
    const name = (ifindex: number) => mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
    const owners = [...mirror.addresses.values()].filter((a) => a.address === src).map((a) => a.ifindex);
    if (owners.length === 0) {
      // The kernel would refuse the lookup anyway (ENETUNREACH for IPv4).
      io.out(`${src} is not an address of this host: replies never come from it`);
      return 1;
    }
    const full = family === 4 ? 32 : 128;
    const request: RouteMessage = {
      kind: 'route',
      header: {
        family: family === 4 ? AF_INET : AF_INET6,
        dstLen: full,
        srcLen: full,
        tos: 0,
        table: 0,
        protocol: 0,
        scope: 0,
        type: 0,
        // IPv6 always reports the table it used, and its strict check rejects the flag.
        flags: family === 4 ? RTM_F_LOOKUP_TABLE : 0,
      },
      attributes: { dst, src },
    };
    const reply = await client.get(RTM_GETROUTE, request, `looking up the route to ${dst} from ${src}`);
    const route = reply.kind === 'route' ? routeFromMessage(reply) : undefined;
    if (!route) throw new Error('the kernel answered the route lookup with something else than a route');
    const rule = firstMatchingRule([...mirror.rules.values()].map((r) => r.rule), src, dst, route.table);
    io.out(`reply from ${src} to ${dst}:`);
    const ruleText = rule ? `${describeRule(rule)}${rule.protocol === config.protocol ? ' (symroute)' : ''}` : '(none found)';
    io.out(`  rule   ${ruleText}`);
    io.out(`  table  ${route.table}`);
    io.out(`  dev    ${route.oif !== undefined ? name(route.oif) : '(none)'}`);
    io.out(`  via    ${route.gateway ?? '(directly connected)'}`);
    if (route.oif !== undefined && owners.includes(route.oif)) {
      io.out(`${src} belongs to ${name(route.oif)}: the reply leaves through the NIC that owns the address`);
      return 0;
    }
    io.out(`${src} belongs to ${owners.map(name).join(', ')}, but the reply leaves through ${route.oif !== undefined ? name(route.oif) : 'no device'}`);
    return 1;
  });
}

/** The first rule, by priority, whose selectors match and which leads to `table`. */
function firstMatchingRule(rules: readonly Rule[], src: string, dst: string, table: number): Rule | undefined {
  const contains = (prefix: string | undefined, length: number, address: string) =>
    length === 0 || (prefix !== undefined && isIPv4(prefix) === isIPv4(address) && networkOf(address, length) === prefix);
  return [...rules]
    .sort((a, b) => a.priority - b.priority)
    .find(
      (rule) =>
        rule.action === FR_ACT_TO_TBL &&
        rule.table === table &&
        // Selectors a locally generated reply cannot be judged on here.
        rule.iifname === undefined &&
        rule.oifname === undefined &&
        rule.fwmark === undefined &&
        contains(rule.src, rule.srcLength, src) &&
        contains(rule.dst, rule.dstLength, dst),
    );
}
