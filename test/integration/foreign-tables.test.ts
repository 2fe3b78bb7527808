// Routes in tables symroute neither uses nor could use are not dumped, and passed over
// undecoded when announced (counted in symroute_routes_skipped_total), yet a table that becomes a NIC's table later — foreign
// routes put into base + N before a NIC with index N exists — is still found to be taken.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab } from '../support/lab.js';
import { buildSharedSubnet } from '../support/topologies.js';

const METRICS = 'metrics:\n  listen: 127.0.0.1:9477\n';

const routeDumps = async (lab: Lab, ns: string) =>
  (await lab.metricSeries(ns, 'symroute_netlink_requests_total{op="dump_route"'))['symroute_netlink_requests_total{op="dump_route",result="ok"}'];
const skipped = async (lab: Lab, ns: string) => (await lab.metricSeries(ns, 'symroute_routes_skipped_total'))['symroute_routes_skipped_total']!;

/** Host routes 198.19.x.y (the `first`th onwards) into `table` through `dev`, in one ip -batch. */
async function bulkRoutes(lab: Lab, ns: string, table: number, dev: string, first: number, count: number, name: string): Promise<void> {
  const host = (n: number) => `198.19.${n >> 8}.${n & 255}`;
  const lines = Array.from({ length: count }, (_, i) => `route add ${host(first + i)}/32 dev ${dev} table ${table} proto static`);
  const path = join(lab.dir, `${name}.batch`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  await lab.ip(ns, '-batch', path);
}

describe('routes of tables symroute does not use', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('are passed over undecoded, and a table that becomes a new NIC\'s still counts as taken', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    const ns = t.serverNs;
    // Before the daemon starts: 100 routes in table 500, and one in table 1057, the table a
    // NIC with ifindex 57 will get (table.base 1000 + 57); no link has that index yet.
    await bulkRoutes(lab, ns, 500, 'b0', 0, 100, 'bulk-500');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b0', 'table', '1057', 'proto', 'static');
    const daemon = await lab.startConverged(ns, lab.writeConfig(METRICS));
    // Its first dump asked the kernel for main, local (for the IPv6 addresses it delivers),
    // for its own protocol and for each link's table, one filtered dump each: table 500
    // never left the kernel.
    const links = (await lab.ipJson<unknown[]>(ns, 'link', 'show')).length;
    expect(await routeDumps(lab, ns)).toBe(3 + links);
    expect(await skipped(lab, ns)).toBeLessThan(100); // (the local table's routes are announced and skipped)

    // While it runs, 1000 more into table 500: read no further than their table.
    const before = await skipped(lab, ns);
    await bulkRoutes(lab, ns, 500, 'b1', 100, 1000, 'bulk-500-more');
    await eventually(async () => expect((await skipped(lab, ns)) - before).toBeGreaterThanOrEqual(1000));

    // b2 gets ifindex 57: its table 1057 starts to matter, is dumped, and holds a foreign route.
    await lab.ip(ns, 'link', 'add', 'b2', 'index', '57', 'type', 'veth', 'peer', 'name', 'pb2', 'netns', t.switchNs);
    await lab.ip(t.switchNs, 'link', 'set', 'pb2', 'master', 'br0', 'up');
    await lab.ip(ns, 'link', 'set', 'b2', 'up');
    await lab.ip(ns, 'addr', 'add', '198.18.1.3/20', 'dev', 'b2');
    const collision = 'b2: table 1057 holds a route symroute does not own (203.0.113.0/24 dev b0 table 1057 scope link proto 4)';
    await eventually(() => expect(daemon.messages(), daemon.log()).toContainEqual(expect.stringContaining(collision)));
    await lab.daemonCaughtUp(ns, '198.18.1.1', await lab.tableOf(ns, 'b0'));
    expect((await lab.ownedRules(ns)).map((r) => r.table).sort()).toEqual([String(await lab.tableOf(ns, 'b0')), String(await lab.tableOf(ns, 'b1'))].sort());

    // Its table is now read: the foreign route going away is seen, and b2 gets its rule.
    await lab.ip(ns, 'route', 'del', '203.0.113.0/24', 'dev', 'b0', 'table', '1057');
    await eventually(async () => expect((await lab.ownedRules(ns)).map((r) => r.table)).toContain('1057'));

    // Not a re-dump (only the kernel's own dump interruptions may count), and nothing louder
    // than the collision itself (and the repair daemonCaughtUp() asked for).
    const resyncs = await lab.metricSeries(ns, 'symroute_resyncs_total');
    expect(Object.entries(resyncs).filter(([s, v]) => !s.includes('dump_interrupted') && v !== 0), JSON.stringify(resyncs)).toEqual([]);
    expect(await routeDumps(lab, ns)).toBe(3 + links + 1); // and b2's table
    const loud = daemon.records.filter((r) => r.level >= 40 && !r.msg.startsWith('repairing 1 rules/routes')).map((r) => r.msg);
    expect(loud).toEqual([expect.stringContaining(collision)]);
  });
});

describe('a main table as large as a full BGP table', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('is read at start-up: more routes in one dump than a call takes arguments', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    const ns = t.serverNs;
    const lines = Array.from({ length: 150_000 }, (_, i) => `route add 2001:db8:f::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}/128 dev b0 proto static`);
    const path = join(lab.dir, 'bulk-main.batch');
    writeFileSync(path, `${lines.join('\n')}\n`);
    await lab.ip(ns, '-batch', path);
    const daemon = await lab.startConverged(ns, lab.writeConfig(METRICS));
    expect(daemon.records.filter((r) => r.level >= 40).map((r) => r.msg)).toEqual([]);
    expect((await lab.ownedRules(ns)).length).toBe(2);
  }, 180_000);
});
