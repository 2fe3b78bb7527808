// Live changes: with the daemon running (never restarted within a test), NICs, addresses,
// names, gateways and IPv6 addresses come and go, and symroute's rules and tables follow.
// `ip -json` is the judge of what the kernel holds; real traffic where it matters.
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, type DaemonProcess, routeLine } from '../support/lab.js';
import { addSharedSubnetNic, buildRoutedSubnets, buildSharedSubnet } from '../support/topologies.js';

// ---------------------------------------------------------------------------------------
// Helpers

/** The table symroute uses for a NIC: table.base (1000) + ifindex, as nothing here is pinned. */
async function tableOf(lab: Lab, ns: string, nic: string): Promise<number> {
  const [link] = await lab.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', nic);
  return 1000 + link!.ifindex;
}

/** symroute's rules as sorted `from <src> lookup <table>` lines: a failing diff reads like `ip rule`. */
async function ownedRuleLines(lab: Lab, ns: string, family: 4 | 6 = 4): Promise<string[]> {
  return (await lab.ownedRules(ns, family)).map((r) => `from ${r.src} lookup ${r.table} pref ${r.priority}`).sort();
}

const ruleLine = (src: string, table: number) => `from ${src} lookup ${table} pref 30000`;


/** A table's routes as sorted lines; a missing table reads as empty. */
async function tableLines(lab: Lab, ns: string, table: number, family: 4 | 6 = 4): Promise<string[]> {
  return (await lab.routes(ns, table, family)).map(routeLine).sort();
}

/**
 * Waits until the daemon has acted on everything that happened before this call, by deleting
 * one of its rules and waiting for the repair: netlink delivers notifications in order and a
 * pass always drains the socket first, so a pass that saw the deletion saw every earlier event.
 * Needed before asserting that something did NOT happen.
 */
async function daemonCaughtUp(lab: Lab, ns: string, src: string, table: number): Promise<void> {
  await lab.ip(ns, 'rule', 'del', 'from', src, 'lookup', String(table), 'pref', '30000');
  await eventually(async () => expect(await ownedRuleLines(lab, ns)).toContain(ruleLine(src, table)));
}

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

/**
 * Starts the daemon with default config (or `yaml`) and waits for its first convergence:
 * rules are written after the routes of their table, so all rules present means all done.
 */
async function startConverged(lab: Lab, ns: string, expectedRules: number, yaml = ''): Promise<DaemonProcess> {
  const daemon = lab.startDaemon(ns, ['--config', lab.writeConfig(yaml)]);
  await eventually(async () => expect(await lab.ownedRules(ns)).toHaveLength(expectedRules));
  return daemon;
}

/**
 * Error-level log lines. Routine changes and repairs never need error recovery: an error here
 * means the daemon's picture of the kernel was wrong (say, it tried to delete a route the
 * kernel had already dropped silently) and it only converged by dumping everything again.
 */
function errorsLogged(daemon: DaemonProcess): string[] {
  return daemon.records.filter((r) => r.level >= 50).map((r) => r.msg);
}

/** The daemon's whole log, attached to assertions whose failure it would explain. */
const logOf = (daemon: DaemonProcess): string => `daemon log:\n${daemon.lines.join('\n')}`;

const SHARED_PREFIX = '198.18.0.0/20'; // Case 2's one subnet
const connected = (nic: string, src: string) => `${SHARED_PREFIX} dev ${nic} scope link src ${src} proto 83`;

// ---------------------------------------------------------------------------------------

describe('live changes in Case 2 (many NICs in one subnet)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('a hot-added NIC gets its rule and table, and answers the client', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3);

    await addSharedSubnetNic(lab, t, 'b3', '198.18.1.4');
    const table = await tableOf(lab, t.serverNs, 'b3');

    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs)).toContain(ruleLine('198.18.1.4', table));
      expect(await tableLines(lab, t.serverNs, table)).toEqual([connected('b3', '198.18.1.4')]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(4);
    // Without its own table the new NIC would be one more dead address (strict rp_filter, arp_ignore).
    const all = t.serverAddresses; // now including b3's
    expect(all).toContain('198.18.1.4');
    expect(await lab.reachable(t.clientNs, all)).toEqual(all);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.1.4')).dev).toBe('b3');
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a second address gets its own rule into the same table; in the same prefix the route keeps the primary src', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3);
    // b2, not b0: the main table prefers b0, so only symroute can make b2's addresses answer.
    const table = await tableOf(lab, t.serverNs, 'b2');

    // Same prefix as the primary: the kernel makes it a secondary.
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.1.50/20', 'dev', 'b2');
    // A prefix of its own (outside the /20): it needs its own connected route in the table.
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.32.1/24', 'dev', 'b2');

    await eventually(async () => {
      const rules = await ownedRuleLines(lab, t.serverNs);
      expect(rules).toContain(ruleLine('198.18.1.50', table));
      expect(rules).toContain(ruleLine('198.18.32.1', table));
      expect(rules).toContain(ruleLine('198.18.1.3', table));
      expect(await tableLines(lab, t.serverNs, table)).toEqual([
        connected('b2', '198.18.1.3'), // still the primary's source, not the secondary's
        '198.18.32.0/24 dev b2 scope link src 198.18.32.1 proto 83',
      ]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(5);
    expect(await lab.reachable(t.clientNs, ['198.18.1.3', '198.18.1.50'])).toEqual(['198.18.1.3', '198.18.1.50']);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.1.50')).dev).toBe('b2');
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a removed address loses its rule; its prefix route goes only with the last address in it', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.1.50/20', 'dev', 'b2');
    await lab.ip(t.serverNs, 'addr', 'add', '198.18.32.1/24', 'dev', 'b2');
    const daemon = await startConverged(lab, t.serverNs, 5);
    const table = await tableOf(lab, t.serverNs, 'b2');
    expect(await tableLines(lab, t.serverNs, table)).toHaveLength(2);

    // Not the last in the /20 (the primary stays): the rule goes, the connected route stays.
    await lab.ip(t.serverNs, 'addr', 'del', '198.18.1.50/20', 'dev', 'b2');
    await eventually(async () => expect(await ownedRuleLines(lab, t.serverNs)).not.toContain(ruleLine('198.18.1.50', table)));
    expect(await tableLines(lab, t.serverNs, table)).toContain(connected('b2', '198.18.1.3'));

    // The last (only) address in 198.18.32.0/24: rule and route both go.
    await lab.ip(t.serverNs, 'addr', 'del', '198.18.32.1/24', 'dev', 'b2');
    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs)).not.toContain(ruleLine('198.18.32.1', table));
      expect(await tableLines(lab, t.serverNs, table)).toEqual([connected('b2', '198.18.1.3')]);
    });
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(3);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a NIC taken down loses its rules; brought back up it gets rules and routes again', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3);
    const table = await tableOf(lab, t.serverNs, 'b1');
    const before = await ownedRuleLines(lab, t.serverNs);

    await lab.ip(t.serverNs, 'link', 'set', 'dev', 'b1', 'down');
    await eventually(async () => expect(await ownedRuleLines(lab, t.serverNs)).not.toContain(ruleLine('198.18.1.2', table)));
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    expect(await tableLines(lab, t.serverNs, table)).toEqual([]);

    // The kernel dropped the table's IPv4 route silently when b1 went down, so getting it back
    // depends on the daemon's mirror having forgotten it too.
    await lab.ip(t.serverNs, 'link', 'set', 'dev', 'b1', 'up');
    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs)).toEqual(before);
      expect(await tableLines(lab, t.serverNs, table)).toEqual([connected('b1', '198.18.1.2')]);
    });
    await eventually(async () => expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses));
    // A mirror that missed the silent drop would have tried to delete b1's gone route (ESRCH)
    // and only recovered by dumping everything again.
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a deleted NIC loses its rules and its table empties', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3);
    const table = await tableOf(lab, t.serverNs, 'b2');
    expect(await tableLines(lab, t.serverNs, table)).toHaveLength(1);

    await lab.ip(t.serverNs, 'link', 'del', 'dev', 'b2');
    // Rules select by source address, so the kernel keeps them when the NIC goes: symroute must.
    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs)).toEqual([
        ruleLine('198.18.1.1', await tableOf(lab, t.serverNs, 'b0')),
        ruleLine('198.18.1.2', await tableOf(lab, t.serverNs, 'b1')),
      ]);
      expect(await lab.rules(t.serverNs)).not.toContainEqual(expect.objectContaining({ table: String(table) }));
    });
    expect(await tableLines(lab, t.serverNs, table)).toEqual([]);
    expect(await lab.reachable(t.clientNs, t.serverAddresses.slice(0, 2))).toEqual(t.serverAddresses.slice(0, 2));
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a NIC renamed out of interfaces.include loses its rules; renamed back it gets them again', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3, 'interfaces:\n  include: ["b*"]\n');
    const table = await tableOf(lab, t.serverNs, 'b1');
    const table0 = await tableOf(lab, t.serverNs, 'b0');
    const before = await ownedRuleLines(lab, t.serverNs);

    await rename(lab, t.serverNs, 'b1', 'x1');
    // Going down already removes the rules, so wait until the daemon has also seen x1 come
    // back up under a name it must not manage before checking nothing was re-added.
    await daemonCaughtUp(lab, t.serverNs, '198.18.1.1', table0);
    expect(await ownedRuleLines(lab, t.serverNs)).not.toContain(ruleLine('198.18.1.2', table));
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    expect(await tableLines(lab, t.serverNs, table)).toEqual([]);

    await rename(lab, t.serverNs, 'x1', 'b1');
    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs)).toEqual(before);
      expect(await tableLines(lab, t.serverNs, table)).toEqual([connected('b1', '198.18.1.2')]);
    });
    await eventually(async () => expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses));
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });
});

describe('live changes in Case 1 (NICs in different subnets)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it("a NIC's table follows its learned gateway and never holds two default routes", async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await startConverged(lab, t.serverNs, 4);
    const table = await tableOf(lab, t.serverNs, 's2');
    expect(await tableLines(lab, t.serverNs, table)).toEqual([
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
    await daemonCaughtUp(lab, t.serverNs, '198.18.1.10', await tableOf(lab, t.serverNs, 's1'));
    expect(await tableLines(lab, t.serverNs, table)).toEqual([
      '198.18.2.0/24 dev s2 scope link src 198.18.2.10 proto 83',
      'default via 198.18.2.254 dev s2 proto 83',
    ]);

    // Traffic proof: with the old gateway address gone from the router (promoting .254 keeps
    // the router's connected route), s2's replies only get out if the table uses the new one.
    await lab.sysctl(t.routerNs, 'net.ipv4.conf.r2.promote_secondaries=1');
    await lab.ip(t.routerNs, 'addr', 'del', '198.18.2.1/24', 'dev', 'r2');
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect((await lab.routeGet(t.serverNs, t.clientAddress, '198.18.2.10')).gateway).toBe('198.18.2.254');
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
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
    const daemon = await startConverged(lab, t.serverNs, 2);
    const [table0, table1] = [await tableOf(lab, t.serverNs, 'b0'), await tableOf(lab, t.serverNs, 'b1')];

    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'b0', 'nodad');
    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::11/64', 'dev', 'b1', 'nodad');

    await eventually(async () => {
      expect(await ownedRuleLines(lab, t.serverNs, 6)).toEqual([
        ruleLine('2001:db8:1::10', table0),
        ruleLine('2001:db8:1::11', table1),
      ]);
      expect(await tableLines(lab, t.serverNs, table0, 6)).toEqual(['2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83']);
      expect(await tableLines(lab, t.serverNs, table1, 6)).toEqual(['2001:db8:1::/64 dev b1 src 2001:db8:1::11 proto 83']);
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
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it("an RA-style default route in the main table becomes the default route of the NIC's table", async () => {
    lab = new Lab();
    const t = await sharedSubnetWithIPv6();
    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'b0', 'nodad');
    const daemon = await startConverged(lab, t.serverNs, 2);
    const table = await tableOf(lab, t.serverNs, 'b0');
    await eventually(async () => expect(await tableLines(lab, t.serverNs, table, 6)).toHaveLength(1));

    await lab.ip(t.serverNs, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'b0', 'metric', '1024');
    await eventually(async () =>
      expect(await tableLines(lab, t.serverNs, table, 6)).toEqual([
        '2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83',
        'default via fe80::1 dev b0 proto 83',
      ]),
    );

    // And it goes when the router's route is withdrawn.
    await lab.ip(t.serverNs, '-6', 'route', 'del', 'default', 'via', 'fe80::1', 'dev', 'b0', 'metric', '1024');
    await eventually(async () =>
      expect(await tableLines(lab, t.serverNs, table, 6)).toEqual(['2001:db8:1::/64 dev b0 src 2001:db8:1::10 proto 83']),
    );
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('a tentative address gets no rule until duplicate address detection completes', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithIPv6();
    const daemon = await startConverged(lab, t.serverNs, 2);
    const table = await tableOf(lab, t.serverNs, 'b1');
    // DAD normally takes about a second here; three probes stretch it to a few seconds, so the
    // tentative window is observed reliably.
    await lab.sysctl(t.serverNs, 'net.ipv6.conf.b1.dad_transmits=3');

    await lab.ip(t.serverNs, '-6', 'addr', 'add', '2001:db8:1::11/64', 'dev', 'b1'); // no nodad
    let tentativeSamples = 0;
    for (;;) {
      // Only a rule read between two "still tentative" readings proves the daemon acted early.
      const first = await addressInfo(lab, t.serverNs, 'b1', '2001:db8:1::11');
      const rules = await ownedRuleLines(lab, t.serverNs, 6);
      const routes = await tableLines(lab, t.serverNs, table, 6);
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
      expect(await ownedRuleLines(lab, t.serverNs, 6)).toEqual([ruleLine('2001:db8:1::11', table)]);
      expect(await tableLines(lab, t.serverNs, table, 6)).toEqual(['2001:db8:1::/64 dev b1 src 2001:db8:1::11 proto 83']);
    });
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });
});
