// Case 1 (NICs in different subnets, each behind its own gateway) end to end: a server with 4 NICs in 4 subnets behind one router with
// strict rp_filter, the default route via the first NIC only, and a client in a fifth subnet.
// Without symroute every reply leaves through s1, so the router drops all but s1's replies.
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, type IpRoute } from '../support/lab.js';
import { buildRoutedSubnets, type RoutedSubnets } from '../support/topologies.js';

const PRIORITY = 30000;
const TABLE_BASE = 1000;

/** `gateways:` naming each NIC's router address, as an admin would write it. */
function gatewaysConfig(t: RoutedSubnets): string {
  return ['gateways:', ...t.nics.map((nic, k) => `  ${nic}: {ipv4: ${t.gateways[k]}}`)].join('\n') + '\n';
}

/** The table symroute uses for each NIC: base + ifindex unless pinned. */
async function tablesOf(lab: Lab, t: RoutedSubnets, pinned: Record<string, number> = {}): Promise<number[]> {
  return Promise.all(t.nics.map(async (nic) => pinned[nic] ?? TABLE_BASE + (await lab.ifindex(t.serverNs, nic))));
}

const routeText = (r: IpRoute) =>
  [
    r.dst,
    r.gateway && `via ${r.gateway}`,
    `dev ${r.dev}`,
    r.scope && r.scope !== 'global' && `scope ${r.scope}`,
    r.prefsrc && `src ${r.prefsrc}`,
    r.protocol && `proto ${r.protocol}`, // ip -json leaves out "boot", the default
  ]
    .filter(Boolean)
    .join(' ');

/**
 * Waits until the server holds exactly what Case 1 needs: for NIC k, table k with
 * `default via <gateway k> dev <nic k>` and the connected /24 sourced from address k, and
 * the `from` rules given by `ruleSources` pointing into it.
 */
async function expectPerNicTables(
  lab: Lab,
  t: RoutedSubnets,
  tables: number[],
  ruleSources: (k: number) => string = (k) => t.serverAddresses[k]!,
): Promise<void> {
  const wantedRules = t.nics.map((_, k) => `from ${ruleSources(k)} lookup ${tables[k]} pref ${PRIORITY}`).sort();
  await eventually(async () => {
    expect(await lab.ownedRuleTexts(t.serverNs)).toEqual(wantedRules);
    for (const [k, nic] of t.nics.entries()) {
      const routes = (await lab.routes(t.serverNs, tables[k]!)).map(routeText).sort();
      expect(routes, `table ${tables[k]} (${nic})`).toEqual([
        `198.18.${k + 1}.0/24 dev ${nic} scope link src ${t.serverAddresses[k]} proto 83`,
        `default via ${t.gateways[k]} dev ${nic} proto 83`,
      ]);
    }
  });
}

/** The reply to the client from address k is routed out of NIC k. */
async function expectRepliesLeaveTheirOwnNic(lab: Lab, t: RoutedSubnets): Promise<void> {
  for (const [k, address] of t.serverAddresses.entries()) {
    const route = await lab.routeGet(t.serverNs, t.clientAddress, address);
    expect(route, `reply from ${address}`).toMatchObject({ dev: t.nics[k], gateway: t.gateways[k] });
  }
}

describe('Case 1: NICs in different subnets, each behind its own gateway', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('with gateways from the config, makes 4 of 4 addresses answer where only 1 did', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab);
    // Only s1 carries the default route, so only s1's replies get past the router.
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual([t.serverAddresses[0]]);

    lab.startDaemon(t.serverNs, ['--config', lab.writeConfig(gatewaysConfig(t))]);
    await expectPerNicTables(lab, t, await tablesOf(lab, t));

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    await expectRepliesLeaveTheirOwnNic(lab, t);
  });

  it('also with strict rp_filter on the server, where the requests themselves were dropped', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { serverRpFilter: true });
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual([t.serverAddresses[0]]);

    lab.startDaemon(t.serverNs, ['--config', lab.writeConfig(gatewaysConfig(t))]);
    await expectPerNicTables(lab, t, await tablesOf(lab, t));

    // The reverse-path check now finds the client via the NIC each request came in on.
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    await expectRepliesLeaveTheirOwnNic(lab, t);
  });

  it('learns each gateway from the per-device default routes in the main table', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true });
    // Four defaults with rising metrics: the lowest (s1) wins for every reply.
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual([t.serverAddresses[0]]);

    // No gateways in the config at all: they must come from the main table.
    lab.startDaemon(t.serverNs, ['--config', lab.writeConfig('')]);
    await expectPerNicTables(lab, t, await tablesOf(lab, t));

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    await expectRepliesLeaveTheirOwnNic(lab, t);
    // The main table's own default routes are not symroute's and stay as they were.
    const main = (await lab.routes(t.serverNs, 'main')).filter((r) => r.dst === 'default');
    expect(main.map((r) => `${routeText(r)} metric ${r.metric}`).sort()).toEqual(
      t.nics.map((nic, k) => `default via ${t.gateways[k]} dev ${nic} metric ${101 + k}`),
    );
  });

  it('with rule.match: prefix, installs one `from <subnet>` rule per NIC', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual([t.serverAddresses[0]]);

    const config = `rule: {match: prefix}\n${gatewaysConfig(t)}`;
    lab.startDaemon(t.serverNs, ['--config', lab.writeConfig(config)]);
    await expectPerNicTables(lab, t, await tablesOf(lab, t), (k) => `198.18.${k + 1}.0/24`);

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    await expectRepliesLeaveTheirOwnNic(lab, t);
  });

  it('puts a pinned interface in its pinned table (an id >= 256, so FRA_TABLE/RTA_TABLE)', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab);

    const config = `table: {pinned: {s2: 4242}}\n${gatewaysConfig(t)}`;
    lab.startDaemon(t.serverNs, ['--config', lab.writeConfig(config)]);
    const tables = await tablesOf(lab, t, { s2: 4242 });
    expect(tables[1]).toBe(4242);
    await expectPerNicTables(lab, t, tables);

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    await expectRepliesLeaveTheirOwnNic(lab, t);
    // The kernel itself resolves s2's replies through table 4242, not a truncated u8 id.
    expect(await lab.routeGet(t.serverNs, t.clientAddress, t.serverAddresses[1]!)).toMatchObject({
      dev: 's2',
      table: '4242',
    });
  });

  it('keeps an on-link gateway on-link: a /32 address behind a router outside it', async () => {
    lab = new Lab();
    const host = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.veth(host, 'e3', peer, 'f3');
    await lab.ip(host, 'addr', 'add', '198.18.8.10/32', 'dev', 'e3');
    await lab.ip(host, 'route', 'add', 'default', 'via', '198.18.8.1', 'dev', 'e3', 'onlink');
    const config = lab.writeConfig('');
    const once = await lab.runCli(host, ['run', '--once', '--config', config]);
    expect(once.code, once.stdout).toBe(0);
    const [rule] = await lab.ownedRules(host);
    expect(await lab.routes(host, rule!.table)).toEqual([
      expect.objectContaining({ dst: 'default', gateway: '198.18.8.1', dev: 'e3', flags: ['onlink'] }),
    ]);
    // And it compares equal to what the kernel reports: nothing left to do.
    expect((await lab.runCli(host, ['plan', '--config', config])).code).toBe(0);
  });
});
