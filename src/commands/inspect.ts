// Read-only operator commands: plan, status, explain. Each takes one snapshot of the kernel
// (the same dumps the daemon starts from) and runs the same pure planner and diff, so what
// they print is exactly what `symroute run` would do.
import { get } from 'node:http';
import type { Config } from '../config/config.js';
import { isPlumbingName } from '../domain/interface-names.js';
import { priorityCollision } from '../domain/collisions.js';
import { isPlumbingRoute } from '../domain/destinations.js';
import { computeChanges, type Change } from '../domain/diff.js';
import { canonicalAddress, familyOf } from '../net/ip.js';
import { linkName, type Mirror } from '../domain/mirror.js';
import { describeRoute, describeRule, type Route, type Rule } from '../domain/model.js';
import { RtnlClient } from '../netlink/client.js';
import { RTM_GETROUTE } from '../netlink/constants.js';
import { FR_ACT_TO_TBL, RT_TABLE_MAIN } from '../domain/constants.js';
import { routeFromMessage } from '../kernel/objects.js';
import { plan, type InterfacePlan, type Plan } from '../domain/planner.js';
import { describeChange } from '../kernel/reconciler.js';
import { checkSysctls, ConfFiles } from '../host/sysctl.js';
import { dumpMirror } from '../kernel/watcher.js';
import { routeLookupRequest, verifyReplyPaths } from '../kernel/route-lookups.js';
import { firstMatchingRule, type PathVerdict } from '../domain/reply-paths.js';

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
  const mirror = await dumpMirror(client, config, (route, linkName) => isPlumbingRoute(config, route, linkName));
  const desired = plan(config, mirror);
  return {
    mirror,
    plan: desired,
    phases: computeChanges(desired, mirror, config.protocol),
    linkName: (ifindex) => linkName(mirror, ifindex),
  };
}

/** `+`/`-` lines in ip(8) syntax; a replace shows as the old route going and the new coming. */
function changeLines(change: Change, linkName: (ifindex: number) => string): string[] {
  const text = describeChange(change, linkName);
  if (change.op === 'replace') return [`- route ${describeRoute(change.replaced, linkName)}`, `+ ${text}`];
  return [`${change.op === 'add' ? '+' : '-'} ${text}`];
}

// --json: objects with named fields, stable (fields are only ever added). Prefixes are always
// CIDR ("198.18.1.10/32", "0.0.0.0/0"), devices are names, families "ipv4"/"ipv6".

type FamilyName = 'ipv4' | 'ipv6';
const familyName = (family: 4 | 6): FamilyName => (family === 4 ? 'ipv4' : 'ipv6');

export interface RuleJson {
  family: FamilyName;
  from: string;
  to?: string;
  table: number;
  priority: number;
  protocol: number;
}

export interface RouteJson {
  family: FamilyName;
  table: number;
  dst: string;
  dev?: string;
  gateway?: string;
  onlink?: true;
  nexthops?: { dev: string; gateway?: string }[];
  scope: 'link' | 'global' | 'host' | number;
  prefsrc?: string;
  metric: number;
  protocol: number;
}

export type ChangeJson =
  | { op: 'add' | 'delete'; rule: RuleJson }
  | { op: 'add' | 'delete'; route: RouteJson }
  | { op: 'replace'; route: RouteJson; replaced: RouteJson };

const SCOPES: Record<number, RouteJson['scope']> = { 0: 'global', 253: 'link', 254: 'host' };

function ruleJson(rule: Rule): RuleJson {
  const any = rule.family === 4 ? '0.0.0.0/0' : '::/0';
  return {
    family: familyName(rule.family),
    from: rule.srcLength ? `${rule.src}/${rule.srcLength}` : any,
    ...(rule.dstLength ? { to: `${rule.dst}/${rule.dstLength}` } : {}),
    table: rule.table,
    priority: rule.priority,
    protocol: rule.protocol,
  };
}

function routeJson(route: Route, linkName: (ifindex: number) => string): RouteJson {
  return {
    family: familyName(route.family),
    table: route.table,
    dst: `${route.dst}/${route.dstLength}`,
    ...(route.oif !== undefined ? { dev: linkName(route.oif) } : {}),
    ...(route.gateway ? { gateway: route.gateway } : {}),
    ...(route.onlink ? { onlink: true as const } : {}),
    ...(route.nexthops
      ? { nexthops: route.nexthops.map((n) => ({ dev: linkName(n.ifindex), ...(n.gateway ? { gateway: n.gateway } : {}) })) }
      : {}),
    scope: SCOPES[route.scope] ?? route.scope,
    ...(route.prefsrc ? { prefsrc: route.prefsrc } : {}),
    metric: route.metric,
    protocol: route.protocol,
  };
}

function changeJson(change: Change, linkName: (ifindex: number) => string): ChangeJson {
  if (change.kind === 'rule') return { op: change.op, rule: ruleJson(change.rule) };
  if (change.op === 'replace') {
    return { op: 'replace', route: routeJson(change.route, linkName), replaced: routeJson(change.replaced, linkName) };
  }
  return { op: change.op, route: routeJson(change.route, linkName) };
}

const printJson = (io: Output, value: unknown) => io.out(JSON.stringify(value, null, 2));

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** `symroute plan [--json]`: exit 0 when in sync, 1 when changes are pending. */
export async function planCommand(config: Config, json: boolean, io: Output): Promise<number> {
  return withClient(async (client) => {
    const s = await snapshot(config, client);
    const changes = s.phases.flat();
    if (json) {
      printJson(io, {
        inSync: changes.length === 0,
        changes: changes.map((c) => changeJson(c, s.linkName)),
        interfaces: s.plan.interfaces.length,
        rules: s.plan.rules.length,
        routes: s.plan.routes.length,
        problems: s.plan.problems,
      });
      return changes.length === 0 ? 0 : 1;
    }
    const collision = priorityCollision(config, s.mirror);
    for (const problem of collision ? [collision, ...s.plan.problems] : s.plan.problems) io.err(`warning: ${problem}`);
    const lines = s.phases.flat().flatMap((change) => changeLines(change, s.linkName));
    if (lines.length === 0) {
      io.out(`in sync: ${s.plan.interfaces.length} interfaces, ${s.plan.rules.length} rules, ${s.plan.routes.length} routes`);
      return 0;
    }
    for (const line of lines) io.out(line);
    return 1;
  });
}

export interface InterfaceStatus {
  name: string;
  ifindex: number;
  table: number;
  inSync: boolean;
  collision?: string;
  families: {
    family: FamilyName;
    addresses: string[];
    gateway: { address: string; source: string } | null;
    /** A gateway the kernel would refuse in the table: planned as none (see problems). */
    unusableGateway?: { address: string; source: string };
    /** The kernel's verdict on this family's reply paths (symroute verify). */
    replies: ReplyPathStatus;
  }[];
  rules: RuleJson[];
  routes: RouteJson[];
  pending: ChangeJson[];
}

export interface ReplyPathStatus {
  ok: boolean;
  failures: { reason: string; detail: string }[];
}

export interface StatusJson {
  inSync: boolean;
  interfaces: InterfaceStatus[];
  /** Changes to objects symroute owns outside every managed interface's table. */
  leftovers: ChangeJson[];
  problems: readonly string[];
  /** The `to <prefix> lookup main` rules (containers, plumbing, exceptions), when there are any. */
  destinations?: string[];
}

/**
 * What only the running daemon knows: objects someone else keeps removing, as its /healthz
 * lists them. Nothing when no daemon serves metrics here.
 */
async function daemonConflicts(config: Config): Promise<string[]> {
  if (!config.metrics.listen) return [];
  const { host, port } = config.metrics.listen;
  const body = await new Promise<string>((resolve) => {
    // No keep-alive agent: an idle pooled socket would hold the command open after it is done.
    const request = get({ host, port, path: '/healthz', agent: false, timeout: 1000 }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve(text));
    });
    // No daemon running, or not serving metrics: nothing to add.
    request.on('error', () => resolve('')).on('timeout', () => request.destroy());
  });
  return body.split('\n').filter((line) => line.startsWith('conflict: ')).map((line) => line.slice('conflict: '.length));
}

/** `symroute status [--json]`: exit 0 when in sync, 1 when not. */
export async function statusCommand(config: Config, json: boolean, io: Output): Promise<number> {
  return withClient(async (client) => {
    const s = await snapshot(config, client);
    const changes = s.phases.flat();
    const tableOf = (change: Change) => (change.kind === 'route' ? change.route.table : change.rule.table);
    const inTable = (table: number) => changes.filter((c) => tableOf(c) === table);
    const unowned = changes.filter((c) => !s.plan.interfaces.some((i: InterfacePlan) => i.table === tableOf(c)));
    // The `to <prefix> lookup main` rules: no interface's table, so listed on their own.
    const destinations = s.plan.rules.filter((r) => r.dstLength > 0 && r.action === FR_ACT_TO_TBL).map(describeRule);
    // Read afresh (the daemon checks them only when interfaces come and go), and what only
    // the running daemon knows: objects someone keeps removing.
    const sysctl = checkSysctls(new ConfFiles(), s.plan.sharedSubnets, false);
    const collision = priorityCollision(config, s.mirror);
    const problems = [
      ...(collision ? [collision] : []),
      ...s.plan.problems,
      ...sysctl.findings.map((f) => f.message),
      ...sysctl.errors,
      ...(await daemonConflicts(config)),
    ];
    const inSync = changes.length === 0 && problems.length === 0;
    const verdicts = await verifyReplyPaths(client, s.mirror, s.plan.interfaces);
    const replies = (ifname: string, family: 4 | 6): ReplyPathStatus => {
      const failures = verdicts.filter((v) => v.failure && v.probe.ifname === ifname && v.probe.family === family).map((v) => v.failure!);
      return { ok: failures.length === 0, failures: failures.map((f) => ({ reason: f.reason, detail: f.detail })) };
    };
    if (json) {
      const interfaces = s.plan.interfaces.map(
        (i): InterfaceStatus => ({
          name: i.link.name,
          ifindex: i.link.index,
          table: i.table,
          inSync: inTable(i.table).length === 0 && !i.collision,
          ...(i.collision ? { collision: i.collision } : {}),
          families: i.families.map((f) => ({
            family: familyName(f.family),
            addresses: f.addresses.map((a) => `${a.address}/${a.prefixLength}`),
            gateway: f.gateway ? { address: f.gateway.address, source: f.gateway.source } : null,
            ...(f.unusableGateway
              ? { unusableGateway: { address: f.unusableGateway.address, source: f.unusableGateway.source } }
              : {}),
            replies: replies(i.link.name, f.family),
          })),
          rules: s.plan.rules.filter((r) => r.table === i.table).map(ruleJson),
          routes: s.plan.routes.filter((r) => r.table === i.table).map((r) => routeJson(r, s.linkName)),
          pending: inTable(i.table).map((c) => changeJson(c, s.linkName)),
        }),
      );
      const status: StatusJson = {
        inSync,
        interfaces,
        leftovers: unowned.map((c) => changeJson(c, s.linkName)),
        problems,
        ...(destinations.length > 0 ? { destinations } : {}),
      };
      printJson(io, status);
      return inSync ? 0 : 1;
    }
    if (s.plan.interfaces.length === 0) io.out('no managed interfaces');
    for (const i of s.plan.interfaces) {
      const pending = inTable(i.table).flatMap((c) => changeLines(c, s.linkName));
      const state = i.collision ? 'left alone (collision)' : pending.length === 0 ? 'in sync' : `${pending.length} changes pending`;
      io.out(`${i.link.name} (ifindex ${i.link.index}): table ${i.table}, ${state}`);
      for (const f of i.families) {
        const gateway = f.gateway
          ? `gateway ${f.gateway.address} (from ${f.gateway.source})`
          : f.unusableGateway
            ? `gateway ${f.unusableGateway.address} (from ${f.unusableGateway.source}) unusable, see problems`
            : 'no gateway';
        io.out(`  ${familyName(f.family)}  ${f.addresses.map((a) => `${a.address}/${a.prefixLength}`).join(' ')}  ${gateway}`);
        const reply = replies(i.link.name, f.family);
        io.out(reply.ok ? `  replies ${familyName(f.family)} leave through ${i.link.name}` : `  replies ${familyName(f.family)} BROKEN:`);
        for (const failure of reply.failures) io.out(`    ${failure.reason}: ${failure.detail}`);
      }
      for (const rule of s.plan.rules.filter((r) => r.table === i.table)) io.out(`  rule   ${describeRule(rule)}`);
      for (const route of s.plan.routes.filter((r) => r.table === i.table)) io.out(`  route  ${describeRoute(route, s.linkName)}`);
      for (const line of pending) io.out(`  pending ${line}`);
    }
    if (destinations.length > 0) io.out('kept on the main table (containers, plumbing, exceptions):');
    for (const rule of destinations) io.out(`  rule   ${rule}`);
    for (const line of unowned.flatMap((c) => changeLines(c, s.linkName))) io.out(`pending ${line}`);
    if (problems.length > 0) io.out('problems:');
    for (const problem of problems) io.out(`  ${problem}`);
    return inSync ? 0 : 1;
  });
}

/**
 * `symroute explain <dst> --from <src>`: asks the kernel which route a reply from `src` to
 * `dst` takes (as `ip route get <dst> from <src>`), names the rule that led there, and says
 * whether it leaves through the NIC that owns `src`. Exit 0 if it does, 1 if not.
 */
export interface ExplainJson {
  from: string;
  to: string;
  /** The interfaces that own `from` (none: not an address of this host). */
  owners: string[];
  /** The rule that led to the table; `symroute` when it is one of symroute's. */
  rule: (RuleJson & { symroute: boolean }) | null;
  table: number | null;
  dev: string | null;
  gateway: string | null;
  /** The reply leaves through an interface that owns `from`. */
  correct: boolean;
}

export async function explainCommand(config: Config, dstText: string, srcText: string, json: boolean, io: Output): Promise<number> {
  const family = familyOf(dstText);
  if (!family || familyOf(srcText) !== family) {
    io.err(`symroute: explain needs two addresses of one family, got ${JSON.stringify(dstText)} and ${JSON.stringify(srcText)}`);
    return 2;
  }
  // As the kernel prints them, so that 2001:DB8::10 finds 2001:db8::10.
  const dst = canonicalAddress(dstText);
  const src = canonicalAddress(srcText);
  return withClient(async (client) => {
    const mirror = await dumpMirror(client, config);
    const name = (ifindex: number) => linkName(mirror, ifindex);
    const owners = [...mirror.addresses.values()].filter((a) => a.address === src).map((a) => a.ifindex);
    if (owners.length === 0) {
      // The kernel would refuse the lookup anyway (ENETUNREACH for IPv4).
      const answer: ExplainJson = { from: src, to: dst, owners: [], rule: null, table: null, dev: null, gateway: null, correct: false };
      if (json) return (printJson(io, answer), 1);
      io.out(`${src} is not an address of this host: replies never come from it`);
      return 1;
    }
    const request = routeLookupRequest(family, dst, src);
    const reply = await client.get(RTM_GETROUTE, request, `looking up the route to ${dst} from ${src}`);
    const route = reply.kind === 'route' ? routeFromMessage(reply) : undefined;
    if (!route) throw new Error('the kernel answered the route lookup with something else than a route');
    const rule = firstMatchingRule([...mirror.rules.values()].map((r) => r.rule), src, dst, route.table);
    const correct = route.oif !== undefined && owners.includes(route.oif);
    if (json) {
      const answer: ExplainJson = {
        from: src,
        to: dst,
        owners: owners.map(name),
        rule: rule ? { ...ruleJson(rule), symroute: rule.protocol === config.protocol } : null,
        table: route.table,
        dev: route.oif !== undefined ? name(route.oif) : null,
        gateway: route.gateway ?? null,
        correct,
      };
      printJson(io, answer);
      return correct ? 0 : 1;
    }
    io.out(`reply from ${src} to ${dst}:`);
    const ruleText = rule ? `${describeRule(rule)}${rule.protocol === config.protocol ? ' (symroute)' : ''}` : '(none found)';
    io.out(`  rule   ${ruleText}`);
    io.out(`  table  ${route.table}`);
    io.out(`  dev    ${route.oif !== undefined ? name(route.oif) : '(none)'}`);
    io.out(`  via    ${route.gateway ?? '(directly connected)'}`);
    if (correct) {
      io.out(`${src} belongs to ${name(route.oif)}: the reply leaves through the NIC that owns the address`);
      return 0;
    }
    // Replies into local plumbing never leave the host: the bridge, not a NIC, is right.
    if (route.oif !== undefined && isPlumbingName(config, name(route.oif))) {
      io.out(`${dst} is behind ${name(route.oif)} (excluded plumbing: containers, VMs, tunnels): the reply stays on this host, as it should`);
      return 0;
    }
    if (rule && rule.protocol === config.protocol && rule.dstLength > 0 && rule.table === RT_TABLE_MAIN) {
      io.out(`${dst} is in exceptions: the main table routes it whatever the source, as configured`);
      return 0;
    }
    io.out(`${src} belongs to ${owners.map(name).join(', ')}, but the reply leaves through ${route.oif !== undefined ? name(route.oif) : 'no device'}`);
    return 1;
  });
}


export interface VerifyJson {
  /** Every path holds, and no NIC sharing a subnet answers ARP for the others' addresses. */
  ok: boolean;
  /**
   * ARP settings of NICs sharing an IPv4 subnet that let requests for one NIC's addresses
   * arrive on another: the lookups above cannot see that, a client's ARP cache can.
   */
  arp: { ifname: string; key: string; effective: number; detail: string }[];
  paths: {
    ifname: string;
    family: FamilyName;
    direction: 'egress' | 'ingress';
    address: string;
    peer: string;
    offLink: boolean;
    ok: boolean;
    reason?: string;
    detail?: string;
    /** Where a broken egress path ends: the table that won, the device, the rule that led there. */
    table?: number;
    dev?: string;
    rule?: RuleJson;
  }[];
}

/**
 * `symroute verify [--json]`: the kernel's own verdict on every managed address's reply
 * paths (src/domain/reply-paths.ts). Exit 0 when all hold, 1 when any is broken.
 */
export async function verifyCommand(config: Config, json: boolean, io: Output): Promise<number> {
  return withClient(async (client) => {
    const s = await snapshot(config, client);
    const verdicts = await verifyReplyPaths(client, s.mirror, s.plan.interfaces);
    const broken = verdicts.filter((v) => v.failure);
    const sysctl = checkSysctls(new ConfFiles(), s.plan.sharedSubnets, false);
    const ok = broken.length === 0 && sysctl.findings.length === 0 && sysctl.errors.length === 0;
    if (json) {
      const arp = sysctl.findings.map((f) => ({ ifname: f.ifname, key: f.key, effective: f.effective, detail: f.message }));
      const answer: VerifyJson = { ok, arp, paths: verdicts.map((v) => pathJson(v, s.linkName)) };
      printJson(io, answer);
      return ok ? 0 : 1;
    }
    if (s.plan.interfaces.length === 0) io.out('no managed interfaces');
    for (const { probe, failure } of verdicts) {
      const path = probe.direction === 'egress' ? `reply to ${probe.peer}${probe.offLink ? ' (off-link)' : ''}` : `request from ${probe.peer}`;
      const where = `${probe.ifname}  ${familyName(probe.family)}  ${probe.address}  ${path}`;
      io.out(failure ? `${where}: BROKEN ${failure.reason}: ${failure.detail}` : `${where}: ok`);
    }
    for (const finding of sysctl.findings) io.out(`${finding.ifname}  ipv4  ARP: ${finding.message}`);
    for (const error of sysctl.errors) io.out(`ARP: ${error}`);
    io.out(`${verdicts.length - broken.length} of ${verdicts.length} reply paths hold${sysctl.findings.length > 0 ? `; ${sysctl.findings.length} ARP settings let requests arrive on another NIC` : ''}`);
    return ok ? 0 : 1;
  });
}

function pathJson({ probe, failure }: PathVerdict, linkName: (ifindex: number) => string): VerifyJson['paths'][number] {
  return {
    ifname: probe.ifname,
    family: familyName(probe.family),
    direction: probe.direction,
    address: probe.address,
    peer: probe.peer,
    offLink: probe.offLink,
    ok: failure === null,
    ...(failure
      ? {
          reason: failure.reason,
          detail: failure.detail,
          ...(failure.table !== undefined ? { table: failure.table } : {}),
          ...(failure.dev !== undefined ? { dev: linkName(failure.dev) } : {}),
          ...(failure.rule ? { rule: ruleJson(failure.rule) } : {}),
        }
      : {}),
  };
}
