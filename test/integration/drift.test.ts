// Drift: someone edits the kernel behind symroute's back. What it owns (protocol 83) is put
// back; what it does not own — foreign rules, foreign tables, a foreign route squatting in a
// table symroute would have used — is never touched. `ip -json` is the judge.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, type DaemonProcess, type IpRule, routeLine } from '../support/lab.js';
import { addSharedSubnetNic, buildRoutedSubnets, buildSharedSubnet } from '../support/topologies.js';

// ---------------------------------------------------------------------------------------
// Helpers

/** The table symroute uses for a NIC: table.base (1000) + ifindex, as nothing here is pinned. */
async function tableOf(lab: Lab, ns: string, nic: string): Promise<number> {
  const [link] = await lab.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', nic);
  return 1000 + link!.ifindex;
}

const ruleLine = (r: Pick<IpRule, 'src' | 'table' | 'priority'>) => `from ${r.src} lookup ${r.table} pref ${r.priority}`;

/** symroute's rules as sorted `from <src> lookup <table> pref <n>` lines (duplicates kept). */
async function ownedRuleLines(lab: Lab, ns: string): Promise<string[]> {
  return (await lab.ownedRules(ns)).map(ruleLine).sort();
}


async function tableLines(lab: Lab, ns: string, table: number): Promise<string[]> {
  return (await lab.routes(ns, table)).map(routeLine).sort();
}

/** Starts the daemon with default config and waits until it has written `expectedRules` rules. */
async function startConverged(lab: Lab, ns: string, expectedRules: number): Promise<DaemonProcess> {
  const daemon = lab.startDaemon(ns, ['--config', lab.writeConfig('')]);
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

/**
 * Waits until the daemon has acted on everything that happened before this call, by deleting
 * one of its rules and waiting for the repair: netlink delivers notifications in order and a
 * pass always drains the socket first, so a pass that saw the deletion saw every earlier event.
 * Needed before asserting that something did NOT happen (or did not happen twice).
 */
async function daemonCaughtUp(lab: Lab, ns: string, src: string, table: number): Promise<void> {
  const line = ruleLine({ src, table: String(table), priority: 30000 });
  await lab.ip(ns, 'rule', 'del', 'from', src, 'lookup', String(table), 'pref', '30000');
  await eventually(async () => expect(await ownedRuleLines(lab, ns)).toContain(line));
}

/** Runs several `ip` commands as one `ip -batch`, so the kernel sees them back to back. */
async function ipBatch(lab: Lab, ns: string, name: string, commands: string[]): Promise<void> {
  const file = join(lab.dir, name);
  writeFileSync(file, commands.join('\n') + '\n');
  await lab.ip(ns, '-batch', file);
}

// ---------------------------------------------------------------------------------------

describe('drift repair', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('puts back a symroute rule deleted with ip rule del', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await startConverged(lab, t.serverNs, 3);
    const before = await ownedRuleLines(lab, t.serverNs);
    const table = await tableOf(lab, t.serverNs, 'b1');

    // `ip rule del` fails unless it removed a rule; the repair can be too quick to see the gap.
    await lab.ip(t.serverNs, 'rule', 'del', 'from', '198.18.1.2', 'lookup', String(table), 'pref', '30000');

    await eventually(async () => expect(await ownedRuleLines(lab, t.serverNs)).toEqual(before));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('puts back the connected route and the default route deleted from a symroute table', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await startConverged(lab, t.serverNs, 4);
    const table = await tableOf(lab, t.serverNs, 's2');
    const before = await tableLines(lab, t.serverNs, table);
    expect(before).toEqual([
      '198.18.2.0/24 dev s2 scope link src 198.18.2.10 proto 83',
      'default via 198.18.2.1 dev s2 proto 83',
    ]);

    await lab.ip(t.serverNs, 'route', 'del', 'default', 'table', String(table));
    await eventually(async () => expect(await tableLines(lab, t.serverNs, table)).toEqual(before));

    await lab.ip(t.serverNs, 'route', 'del', '198.18.2.0/24', 'table', String(table));
    await eventually(async () => expect(await tableLines(lab, t.serverNs, table)).toEqual(before));

    // Both at once, in the order that would break the table worst (the gateway's route last).
    await ipBatch(lab, t.serverNs, 'del-routes', [
      `route del default table ${table}`,
      `route del 198.18.2.0/24 table ${table}`,
    ]);
    await eventually(async () => expect(await tableLines(lab, t.serverNs, table)).toEqual(before));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('puts back the gateway of its default route after a hand-made ip route replace (still proto 83)', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await startConverged(lab, t.serverNs, 4);
    const table = await tableOf(lab, t.serverNs, 's3');
    const before = await tableLines(lab, t.serverNs, table);
    expect(before).toContain('default via 198.18.3.1 dev s3 proto 83');

    // Looks like symroute's own route (same protocol), so it is symroute's to correct.
    await lab.ip(t.serverNs, 'route', 'replace', 'default', 'via', '198.18.3.254', 'dev', 's3', 'table', String(table), 'proto', '83');
    await eventually(async () => expect(await tableLines(lab, t.serverNs, table)).toEqual(before));
    // Make sure no late second default route turns up once the daemon has seen everything.
    await daemonCaughtUp(lab, t.serverNs, '198.18.1.10', await tableOf(lab, t.serverNs, 's1'));
    expect(await tableLines(lab, t.serverNs, table)).toEqual(before);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('never touches a foreign rule at its own priority or a foreign route in a foreign table', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    // Same priority as symroute's rules, and a table of its own: only the protocol tells them apart.
    await lab.ip(ns, 'rule', 'add', 'from', '203.0.113.5', 'lookup', '77', 'pref', '30000');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b0', 'table', '77');
    const foreignState = async () => ({
      rules: (await lab.rules(ns)).filter((r) => r.protocol !== '83'),
      table77: await lab.routes(ns, 77),
    });
    const before = await foreignState();
    expect(before.rules).toContainEqual(expect.objectContaining({ src: '203.0.113.5', table: '77', priority: 30000 }));
    expect(before.table77).toHaveLength(1);

    const daemon = await startConverged(lab, ns, 3);
    expect(await foreignState()).toEqual(before);
    const [t0, t1, t2] = [await tableOf(lab, ns, 'b0'), await tableOf(lab, ns, 'b1'), await tableOf(lab, ns, 'b2')];

    // A series of live changes and repairs, each waited for; the foreign objects must not move.
    const steps: Array<[string, () => Promise<unknown>, () => Promise<void>]> = [
      [
        'hot-add NIC b3',
        () => addSharedSubnetNic(lab, t, 'b3', '198.18.1.4'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(4),
      ],
      [
        'add a second address to b1',
        () => lab.ip(ns, 'addr', 'add', '198.18.1.60/20', 'dev', 'b1'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(5),
      ],
      [
        'delete a symroute rule',
        () => lab.ip(ns, 'rule', 'del', 'from', '198.18.1.1', 'lookup', String(t0), 'pref', '30000'),
        async () => expect(await ownedRuleLines(lab, ns)).toContain(`from 198.18.1.1 lookup ${t0} pref 30000`),
      ],
      [
        'delete a symroute route',
        () => lab.ip(ns, 'route', 'del', '198.18.0.0/20', 'table', String(t2)),
        async () => expect(await tableLines(lab, ns, t2)).toHaveLength(1),
      ],
      [
        'take b2 down',
        () => lab.ip(ns, 'link', 'set', 'dev', 'b2', 'down'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(4),
      ],
      [
        'bring b2 up',
        () => lab.ip(ns, 'link', 'set', 'dev', 'b2', 'up'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(5),
      ],
      [
        'remove the second address from b1',
        () => lab.ip(ns, 'addr', 'del', '198.18.1.60/20', 'dev', 'b1'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(4),
      ],
      [
        'delete NIC b3',
        () => lab.ip(ns, 'link', 'del', 'dev', 'b3'),
        async () => expect(await lab.ownedRules(ns)).toHaveLength(3),
      ],
    ];
    for (const [step, change, converged] of steps) {
      await change();
      await eventually(converged);
      await daemonCaughtUp(lab, ns, '198.18.1.2', t1);
      expect(await foreignState(), `after: ${step}`).toEqual(before);
    }
    expect(await ownedRuleLines(lab, ns)).toEqual(
      [
        `from 198.18.1.1 lookup ${t0} pref 30000`,
        `from 198.18.1.2 lookup ${t1} pref 30000`,
        `from 198.18.1.3 lookup ${t2} pref 30000`,
      ].sort(),
    );
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it("treats a foreign route in a NIC's would-be table as a collision: logged, left alone, others managed", async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    const taken = await tableOf(lab, ns, 'b1');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b1', 'table', String(taken));
    const takenBefore = await lab.routes(ns, taken);

    const daemon = await startConverged(lab, ns, 2);
    const [t0, t2] = [await tableOf(lab, ns, 'b0'), await tableOf(lab, ns, 'b2')];
    expect(await ownedRuleLines(lab, ns)).toEqual(
      [`from 198.18.1.1 lookup ${t0} pref 30000`, `from 198.18.1.3 lookup ${t2} pref 30000`].sort(),
    );
    await eventually(() => {
      const warning = daemon.records.find((r) => r.level >= 40 && r.msg.includes(`table ${taken}`));
      expect(warning, 'a warning naming the colliding table').toBeDefined();
      expect(warning!.msg).toContain('b1');
    });

    // A change on b1 must not tempt the daemon into the table either.
    await lab.ip(ns, 'addr', 'add', '198.18.1.60/20', 'dev', 'b1');
    await daemonCaughtUp(lab, ns, '198.18.1.1', t0);
    expect(await lab.rules(ns)).not.toContainEqual(expect.objectContaining({ table: String(taken) }));
    expect(await lab.routes(ns, taken)).toEqual(takenBefore);
    // The other NICs are managed as usual.
    expect(await tableLines(lab, ns, t2)).toEqual(['198.18.0.0/20 dev b2 scope link src 198.18.1.3 proto 83']);
    expect(await lab.reachable(t.clientNs, ['198.18.1.1', '198.18.1.3'])).toEqual(['198.18.1.1', '198.18.1.3']);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });

  it('repairs a burst of drift (all 8 rules deleted in one ip -batch) with no duplicates', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 8);
    const ns = t.serverNs;
    const daemon = await startConverged(lab, ns, 8);
    const before = await ownedRuleLines(lab, ns);
    expect(new Set(before).size).toBe(8);
    const deleteAll = (await lab.ownedRules(ns)).map((r) => `rule del from ${r.src} lookup ${r.table} pref ${r.priority}`);

    // Several rounds, each fired as soon as the previous repair is visible (its verifying pass
    // may still be running).
    for (let round = 1; round <= 3; round++) {
      await ipBatch(lab, ns, `burst-${round}`, deleteAll);
      await eventually(async () => expect(await ownedRuleLines(lab, ns)).toEqual(before));
    }
    // Exactly 8 once the daemon has seen everything: no rule was added twice.
    const [first] = t.serverAddresses;
    await daemonCaughtUp(lab, ns, first!, await tableOf(lab, ns, 'b0'));
    expect(await ownedRuleLines(lab, ns)).toEqual(before);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(errorsLogged(daemon), logOf(daemon)).toEqual([]);
  });
});
