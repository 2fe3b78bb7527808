// Drift: someone edits the kernel behind symroute's back. What it owns (protocol 83) is put
// back; what it does not own — foreign rules, foreign tables, a foreign route squatting in a
// table symroute would have used — is never touched. `ip -json` is the judge.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab } from '../support/lab.js';
import { addSharedSubnetNic, buildRoutedSubnets, buildSharedSubnet } from '../support/topologies.js';

// ---------------------------------------------------------------------------------------
// Helpers










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
    const daemon = await lab.startConverged(t.serverNs);
    const before = await lab.ownedRuleLines(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b1');

    // `ip rule del` fails unless it removed a rule; the repair can be too quick to see the gap.
    await lab.ip(t.serverNs, 'rule', 'del', 'from', '198.18.1.2', 'lookup', String(table), 'pref', '30000');

    await eventually(async () => expect(await lab.ownedRuleLines(t.serverNs)).toEqual(before));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('puts back the connected route and the default route deleted from a symroute table', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 's2');
    const before = await lab.tableLines(t.serverNs, table);
    expect(before).toEqual([
      '198.18.2.0/24 dev s2 scope link src 198.18.2.10 proto 83',
      'default via 198.18.2.1 dev s2 proto 83',
    ]);

    await lab.ip(t.serverNs, 'route', 'del', 'default', 'table', String(table));
    await eventually(async () => expect(await lab.tableLines(t.serverNs, table)).toEqual(before));

    await lab.ip(t.serverNs, 'route', 'del', '198.18.2.0/24', 'table', String(table));
    await eventually(async () => expect(await lab.tableLines(t.serverNs, table)).toEqual(before));

    // Both at once, in the order that would break the table worst (the gateway's route last).
    await ipBatch(lab, t.serverNs, 'del-routes', [
      `route del default table ${table}`,
      `route del 198.18.2.0/24 table ${table}`,
    ]);
    await eventually(async () => expect(await lab.tableLines(t.serverNs, table)).toEqual(before));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('puts back the gateway of its default route after a hand-made ip route replace (still proto 83)', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { learnGateways: true, serverRpFilter: true });
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 's3');
    const before = await lab.tableLines(t.serverNs, table);
    expect(before).toContain('default via 198.18.3.1 dev s3 proto 83');

    // Looks like symroute's own route (same protocol), so it is symroute's to correct.
    await lab.ip(t.serverNs, 'route', 'replace', 'default', 'via', '198.18.3.254', 'dev', 's3', 'table', String(table), 'proto', '83');
    await eventually(async () => expect(await lab.tableLines(t.serverNs, table)).toEqual(before));
    // Make sure no late second default route turns up once the daemon has seen everything.
    await lab.daemonCaughtUp(t.serverNs, '198.18.1.10', await lab.tableOf(t.serverNs, 's1'));
    expect(await lab.tableLines(t.serverNs, table)).toEqual(before);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('never touches a foreign rule at its own priority or a foreign route in a foreign table', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    // Same priority as symroute's rules, and a table of its own: only the protocol tells them
    // apart. Added once symroute runs: at start the priority would be refused (collisions.test.ts).
    const daemon = await lab.startConverged(ns);
    await lab.ip(ns, 'rule', 'add', 'from', '203.0.113.5', 'lookup', '77', 'pref', '30000');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b0', 'table', '77');
    const foreignState = async () => ({
      rules: (await lab.rules(ns)).filter((r) => r.protocol !== '83'),
      table77: await lab.routes(ns, 77),
    });
    const before = await foreignState();
    expect(before.rules).toContainEqual(expect.objectContaining({ src: '203.0.113.5', table: '77', priority: 30000 }));
    expect(before.table77).toHaveLength(1);

    const [t0, t1, t2] = [await lab.tableOf(ns, 'b0'), await lab.tableOf(ns, 'b1'), await lab.tableOf(ns, 'b2')];

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
        async () => expect(await lab.ownedRuleLines(ns)).toContain(`from 198.18.1.1 lookup ${t0} pref 30000`),
      ],
      [
        'delete a symroute route',
        () => lab.ip(ns, 'route', 'del', '198.18.0.0/20', 'table', String(t2)),
        async () => expect(await lab.tableLines(ns, t2)).toHaveLength(1),
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
      await lab.daemonCaughtUp(ns, '198.18.1.2', t1);
      expect(await foreignState(), `after: ${step}`).toEqual(before);
    }
    expect(await lab.ownedRuleLines(ns)).toEqual(
      [
        `from 198.18.1.1 lookup ${t0} pref 30000`,
        `from 198.18.1.2 lookup ${t1} pref 30000`,
        `from 198.18.1.3 lookup ${t2} pref 30000`,
      ].sort(),
    );
    expect(daemon.errors(), daemon.log()).toEqual([]);
    // Reported once, as a rule at symroute's priority that it does not own.
    expect(daemon.records.filter((r) => r.level === 40 && r.msg.includes('from 203.0.113.5 lookup 77 pref 30000'))).toHaveLength(1);
  });

  it("treats a foreign route in a NIC's would-be table as a collision: logged, left alone, others managed", async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    const taken = await lab.tableOf(ns, 'b1');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b1', 'table', String(taken));
    const takenBefore = await lab.routes(ns, taken);

    const daemon = await lab.startConverged(ns);
    const [t0, t2] = [await lab.tableOf(ns, 'b0'), await lab.tableOf(ns, 'b2')];
    expect(await lab.ownedRuleLines(ns)).toEqual(
      [`from 198.18.1.1 lookup ${t0} pref 30000`, `from 198.18.1.3 lookup ${t2} pref 30000`].sort(),
    );
    await eventually(() => {
      const warning = daemon.records.find((r) => r.level >= 40 && r.msg.includes(`table ${taken}`));
      expect(warning, 'a warning naming the colliding table').toBeDefined();
      expect(warning!.msg).toContain('b1');
    });

    // A change on b1 must not tempt the daemon into the table either.
    await lab.ip(ns, 'addr', 'add', '198.18.1.60/20', 'dev', 'b1');
    await lab.daemonCaughtUp(ns, '198.18.1.1', t0);
    expect(await lab.rules(ns)).not.toContainEqual(expect.objectContaining({ table: String(taken) }));
    expect(await lab.routes(ns, taken)).toEqual(takenBefore);
    // The other NICs are managed as usual.
    expect(await lab.tableLines(ns, t2)).toEqual(['198.18.0.0/20 dev b2 scope link src 198.18.1.3 proto 83']);
    expect(await lab.reachable(t.clientNs, ['198.18.1.1', '198.18.1.3'])).toEqual(['198.18.1.1', '198.18.1.3']);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('repairs a burst of drift (all 8 rules deleted in one ip -batch) with no duplicates', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 8);
    const ns = t.serverNs;
    const daemon = await lab.startConverged(ns);
    const before = await lab.ownedRuleLines(ns);
    expect(new Set(before).size).toBe(8);
    const deleteAll = (await lab.ownedRules(ns)).map((r) => `rule del from ${r.src} lookup ${r.table} pref ${r.priority}`);

    // Several rounds, each fired as soon as the previous repair is visible (its verifying pass
    // may still be running).
    for (let round = 1; round <= 3; round++) {
      await ipBatch(lab, ns, `burst-${round}`, deleteAll);
      await eventually(async () => expect(await lab.ownedRuleLines(ns)).toEqual(before));
    }
    // Exactly 8 once the daemon has seen everything: no rule was added twice.
    const [first] = t.serverAddresses;
    await lab.daemonCaughtUp(ns, first!, await lab.tableOf(ns, 'b0'));
    expect(await lab.ownedRuleLines(ns)).toEqual(before);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });
});
