// Live changes: with the daemon running (never restarted within a test), NICs, addresses,
// names, gateways and IPv6 addresses come and go, and symroute's rules and tables follow.
// `ip -json` is the judge of what the kernel holds; real traffic where it matters.
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, routeLine } from '../support/lab.js';
import { addSharedSubnetNic, buildRoutedSubnets, buildSharedSubnet } from '../support/topologies.js';

// ---------------------------------------------------------------------------------------
// Helpers



const ruleLine = (src: string, table: number) => `from ${src} lookup ${table} pref 30000`;




/** `ip link set dev X down; ip link set dev X name Y; ip link set dev Y up`, as an admin would. */
async function rename(lab: Lab, ns: string, from: string, to: string): Promise<void> {
  await lab.ip(ns, 'link', 'set', 'dev', from, 'down');
  await lab.ip(ns, 'link', 'set', 'dev', from, 'name', to);
  await lab.ip(ns, 'link', 'set', 'dev', to, 'up');
}

interface AddressInfo {
  family: string;
  local: string;
  tentative?: boolean;
}

async function addressInfo(lab: Lab, ns: string, nic: string, address: string): Promise<AddressInfo | undefined> {
  const [link] = await lab.ipJson<Array<{ addr_info: AddressInfo[] }>>(ns, '-6', 'addr', 'show', 'dev', nic);
  return link?.addr_info.find((a) => a.local === address);
}




const SHARED_PREFIX = '198.18.0.0/20'; // Case 2's one subnet
const connected = (nic: string, src: string) => `${SHARED_PREFIX} dev ${nic} scope link src ${src} proto 83`;

// ---------------------------------------------------------------------------------------

describe('live changes in Case 2 (many NICs in one subnet)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('a hot-added NIC gets its rule and table, and answers the client', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs);

    await addSharedSubnetNic(lab, t, 'b3', '198.18.1.4');
    const table = await lab.tableOf(t.serverNs, 'b3');

    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs)).toContain(ruleLine('198.18.1.4', table));
      expect(await lab.tableLines(t.serverNs, table)).toEqual([connected('b3', '198.18.1.4')]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(4);
    // Without its own table the new NIC would be one more dead address (strict rp_filter, arp_ignore).
    const all = t.serverAddresses; // now including b3's
    expect(all).toContain('198.18.1.4');
    expect(await lab.reachable(t.clientNs, all)).toEqual(all);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.1.4')).dev).toBe('b3');
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a second address gets its own rule into the same table; in the same prefix the route keeps the primary src', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs);
    // b2, not b0: the main table prefers b0, so only symroute can make b2's addresses answer.
    const table = await lab.tableOf(t.serverNs, 'b2');

    // Same prefix as the primary: the kernel makes it a secondary.
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.1.50/20', 'dev', 'b2');
    // A prefix of its own (outside the /20): it needs its own connected route in the table.
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.32.1/24', 'dev', 'b2');

    await eventually(async () => {
      const rules = await lab.ownedRuleLines(t.serverNs);
      expect(rules).toContain(ruleLine('198.18.1.50', table));
      expect(rules).toContain(ruleLine('198.18.32.1', table));
      expect(rules).toContain(ruleLine('198.18.1.3', table));
      expect(await lab.tableLines(t.serverNs, table)).toEqual([
        connected('b2', '198.18.1.3'), // still the primary's source, not the secondary's
        '198.18.32.0/24 dev b2 scope link src 198.18.32.1 proto 83',
      ]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(5);
    expect(await lab.reachable(t.clientNs, ['198.18.1.3', '198.18.1.50'])).toEqual(['198.18.1.3', '198.18.1.50']);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.1.50')).dev).toBe('b2');
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a removed address loses its rule; its prefix route goes only with the last address in it', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.1.50/20', 'dev', 'b2');
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.32.1/24', 'dev', 'b2');
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b2');
    expect(await lab.tableLines(t.serverNs, table)).toHaveLength(2);

    // Not the last in the /20 (the primary stays): the rule goes, the connected route stays.
    await lab.ip(t.serverNs, 'addr', 'del', '198.18.1.50/20', 'dev', 'b2');
    await eventually(async () => expect(await lab.ownedRuleLines(t.serverNs)).not.toContain(ruleLine('198.18.1.50', table)));
    expect(await lab.tableLines(t.serverNs, table)).toContain(connected('b2', '198.18.1.3'));

    // The last (only) address in 198.18.32.0/24: rule and route both go.
    await lab.ip(t.serverNs, 'addr', 'del', '198.18.32.1/24', 'dev', 'b2');
    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs)).not.toContain(ruleLine('198.18.32.1', table));
      expect(await lab.tableLines(t.serverNs, table)).toEqual([connected('b2', '198.18.1.3')]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(3);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a NIC taken down loses its rules; brought back up it gets rules and routes again', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b1');
    const before = await lab.ownedRuleLines(t.serverNs);

    await lab.ip(t.serverNs, 'link', 'set', 'dev', 'b1', 'down');
    await eventually(async () => expect(await lab.ownedRuleLines(t.serverNs)).not.toContain(ruleLine('198.18.1.2', table)));
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    expect(await lab.tableLines(t.serverNs, table)).toEqual([]);

    // The kernel dropped the table's IPv4 route silently when b1 went down, so getting it back
    // depends on the daemon's mirror having forgotten it too.
    await lab.ip(t.serverNs, 'link', 'set', 'dev', 'b1', 'up');
    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs)).toEqual(before);
      expect(await lab.tableLines(t.serverNs, table)).toEqual([connected('b1', '198.18.1.2')]);
    });
    await eventually(async () => expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses));
    // A mirror that missed the silent drop would have tried to delete b1's gone route (ESRCH)
    // and only recovered by dumping everything again.
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a deleted NIC loses its rules and its table empties', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b2');
    expect(await lab.tableLines(t.serverNs, table)).toHaveLength(1);

    await lab.ip(t.serverNs, 'link', 'del', 'dev', 'b2');
    // Rules select by source address, so the kernel keeps them when the NIC goes: symroute must.
    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs)).toEqual([
        ruleLine('198.18.1.1', await lab.tableOf(t.serverNs, 'b0')),
        ruleLine('198.18.1.2', await lab.tableOf(t.serverNs, 'b1')),
      ]);
      expect(await lab.rules(t.serverNs)).not.toContainEqual(expect.objectContaining({ table: String(table) }));
    });
    expect(await lab.tableLines(t.serverNs, table)).toEqual([]);
    expect(await lab.reachable(t.clientNs, t.serverAddresses.slice(0, 2))).toEqual(t.serverAddresses.slice(0, 2));
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a NIC renamed out of interfaces.include loses its rules; renamed back it gets them again', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig('interfaces:\n  include: ["b*"]\n'));
    const table = await lab.tableOf(t.serverNs, 'b1');
    const table0 = await lab.tableOf(t.serverNs, 'b0');
    const before = await lab.ownedRuleLines(t.serverNs);

    await rename(lab, t.serverNs, 'b1', 'x1');
    // Going down already removes the rules, so wait until the daemon has also seen x1 come
    // back up under a name it must not manage before checking nothing was re-added.
    await lab.daemonCaughtUp(t.serverNs, '198.18.1.1', table0);
    expect(await lab.ownedRuleLines(t.serverNs)).not.toContain(ruleLine('198.18.1.2', table));
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    expect(await lab.tableLines(t.serverNs, table)).toEqual([]);

    await rename(lab, t.serverNs, 'x1', 'b1');
    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs)).toEqual(before);
      expect(await lab.tableLines(t.serverNs, table)).toEqual([connected('b1', '198.18.1.2')]);
    });
    await eventually(async () => expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses));
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });
});

describe('live changes in Case 1 (NICs in different subnets)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it("a NIC's table follows its learned gateway and never holds two default routes", async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 's2');
    expect(await lab.tableLines(t.serverNs, table)).toEqual([
      '198.18.2.0/24 dev s2 scope link src 198.18.2.10 proto 83',
      'default via 198.18.2.1 dev s2 proto 83',
    ]);

    // A second router address on s2's subnet becomes the new gateway, the way a DHCP renewal
    // would replace the per-device default route in the main table.
    await lab.ip(t.routerNs, 'addr', 'add', '198.18.2.254/24', 'dev', 'r2');
    await lab.ip(t.serverNs, 'route', 'replace', 'default', 'via', '198.18.2.254', 'dev', 's2', 'metric', '102');

    // Sample the table densely while it converges: no sample may show two default routes.
    const defaultCounts: number[] = [];
    await eventually(
      async () => {
        const defaults = (await lab.routes(t.serverNs, table)).filter((r) => r.dst === 'default');
        defaultCounts.push(defaults.length);
        expect(defaults.map(routeLine)).toEqual(['default via 198.18.2.254 dev s2 proto 83']);
      },
      10_000,
      5,
    );
    expect(Math.max(...defaultCounts)).toBe(1);
    await lab.daemonCaughtUp(t.serverNs, '198.18.1.10', await lab.tableOf(t.serverNs, 's1'));
    expect(await lab.tableLines(t.serverNs, table)).toEqual([
      '198.18.2.0/24 dev s2 scope link src 198.18.2.10 proto 83',
      'default via 198.18.2.254 dev s2 proto 83',
    ]);

    // Traffic proof: with the old gateway address gone from the router (promoting .254 keeps
    // the router's connected route), s2's replies only get out if the table uses the new one.
    await lab.sysctl(t.routerNs, 'net.ipv4.conf.r2.promote_secondaries=1');
    await lab.ip(t.routerNs, 'addr', 'del', '198.18.2.1/24', 'dev', 'r2');
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.2.10')).gateway).toBe('198.18.2.254');
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });
});

describe('live changes with IPv6', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  /** Case 2 with two NICs and the client also on 2001:db8:1::/64. */
  async function sharedSubnetWithIPv6() {
    const t = await buildSharedSubnet(lab, 2);
    await lab.ip(t.clientNs, '-6', 'addr', 'add', '2001:db8:1::100/64', 'dev', 'a0', 'nodad');
    return t;
  }

  it('a global address gets a rule and a connected route with itself as source; link-local gets no rule', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithIPv6();
    const daemon = await lab.startConverged(t.serverNs);
    const [table0, table1] = [await lab.tableOf(t.serverNs, 'b0'), await lab.tableOf(t.serverNs, 'b1')];

    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'b0', 'nodad');
    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::11/64', 'dev', 'b1', 'nodad');

    await eventually(async () => {
      expect(await lab.ownedRuleLines(t.serverNs, 6)).toEqual([
        ruleLine('2001:db8:1::10', table0),
        ruleLine('2001:db8:1::11', table1),
      ]);
      expect(await lab.tableLines(t.serverNs, table0, 6)).toEqual(['2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83']);
      expect(await lab.tableLines(t.serverNs, table1, 6)).toEqual(['2001:db8:1::/64 dev b1 src 2001:db8:1::11 proto 83']);
    });
    // Both NICs also have fe80:: addresses: the exact lists above say they got no rule.
    // The IPv4 rules are not disturbed by the IPv6 ones.
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    // The main table would send replies from b1's address out of b0; symroute's table keeps them on b1.
    expect((await lab.routeGet(t.serverNs, '2001:db8:1::100', '2001:db8:1::11')).dev).toBe('b1');
    expect(await lab.reachable(t.clientNs, ['2001:db8:1::10', '2001:db8:1::11'])).toEqual([
      '2001:db8:1::10',
      '2001:db8:1::11',
    ]);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it("an RA-style default route in the main table becomes the default route of the NIC's table", async () => {
    lab = new Lab();
    const t = await sharedSubnetWithIPv6();
    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'b0', 'nodad');
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b0');
    await eventually(async () => expect(await lab.tableLines(t.serverNs, table, 6)).toHaveLength(1));

    await lab.ip(t.serverNs, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'b0', 'metric', '1024');
    await eventually(async () =>
      expect(await lab.tableLines(t.serverNs, table, 6)).toEqual([
        '2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83',
        'default via fe80::1 dev b0 proto 83',
      ]),
    );

    // And it goes when the router's route is withdrawn.
    await lab.ip(t.serverNs, '-6', 'route', 'del', 'default', 'via', 'fe80::1', 'dev', 'b0', 'metric', '1024');
    await eventually(async () =>
      expect(await lab.tableLines(t.serverNs, table, 6)).toEqual(['2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83']),
    );
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('a tentative address gets no rule until duplicate address detection completes', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithIPv6();
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b1');
    // DAD normally takes about a second here; three probes stretch it to a few seconds, so the
    // tentative window is observed reliably.
    await lab.sysctl(t.serverNs, 'net.ipv6.conf.b1.dad_transmits=3');

    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::11/64', 'dev', 'b1'); // no nodad
    let tentativeSamples = 0;
    for (;;) {
      // Only a rule read between two "still tentative" readings proves the daemon acted early.
      const first = await addressInfo(lab, t.serverNs, 'b1', '2001:db8:1::11');
      const rules = await lab.ownedRuleLines(t.serverNs, 6);
      const routes = await lab.tableLines(t.serverNs, table, 6);
      const second = await addressInfo(lab, t.serverNs, 'b1', '2001:db8:1::11');
      if (!first?.tentative || !second?.tentative) break;
      tentativeSamples++;
      expect(rules).toEqual([]);
      expect(routes).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(tentativeSamples).toBeGreaterThan(0);

    await eventually(async () => {
      expect((await addressInfo(lab, t.serverNs, 'b1', '2001:db8:1::11'))?.tentative).toBeUndefined();
      expect(await lab.ownedRuleLines(t.serverNs, 6)).toEqual([ruleLine('2001:db8:1::11', table)]);
      expect(await lab.tableLines(t.serverNs, table, 6)).toEqual(['2001:db8:1::/64 dev b1 src 2001:db8:1::11 proto 83']);
    });
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });
});
