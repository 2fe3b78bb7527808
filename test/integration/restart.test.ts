// Restarts and shutdowns: symroute keeps no state file, so after a crash it must adopt what
// it installed earlier (proto 83) without touching anything that is still right, repair what
// changed while it was down, and never touch objects it does not own. Uses Case 2's layout
// (buildSharedSubnet): NIC k = b{k} with 198.18.1.{k+1}/20, one table and one rule per address.
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Lab, REPO, type DaemonProcess } from '../support/lab.js';
import { addSharedSubnetNic, buildSharedSubnet } from '../support/topologies.js';

const OWNED = '83'; // symroute's default protocol number, as `ip -N -json` prints it
const PRIORITY = 30000;



/**
 * What the daemon changed, from its log ("added …", "deleted …", "replaced with …"): the
 * change in ip(8) syntax, without the trailing "(<ifname>)" some messages carry, and the
 * interface the record names, if any.
 */
function changesLogged(daemon: DaemonProcess): Array<{ text: string; ifname?: unknown }> {
  return daemon.records
    .filter((r) => /^(added|deleted|replaced) /.test(r.msg))
    .map((r) => ({ text: r.msg.replace(/ \([^()]*\)$/, ''), ifname: r.ifname }));
}

/** The rules symroute should own for `addresses` (nic -> its addresses), as ruleText gives them. */
async function wantedRules(lab: Lab, ns: string, addresses: Record<string, string[]>): Promise<string[]> {
  const rules: string[] = [];
  for (const [nic, list] of Object.entries(addresses)) {
    const table = await lab.tableOf(ns, nic);
    rules.push(...list.map((address) => `from ${address} lookup ${table} pref ${PRIORITY}`));
  }
  return rules.sort();
}

/** Every rule (both families) and every IPv4 route in every table, as `ip -N -json` prints each. */
interface KernelState {
  rules: Array<Record<string, unknown>>;
  routes: Array<Record<string, unknown>>;
}

async function everyObject(lab: Lab, ns: string): Promise<KernelState> {
  const rules = [
    ...(await lab.ipJsonNumeric<Record<string, unknown>>(ns, '-4', 'rule', 'show')),
    ...(await lab.ipJsonNumeric<Record<string, unknown>>(ns, '-6', 'rule', 'show')),
  ];
  // IPv6 routes are left out: the kernel's link-local routes come and go with DAD on their
  // own schedule, and these tests give the server no IPv6 address for symroute to manage.
  const routes = await lab.ipJsonNumeric<Record<string, unknown>>(ns, '-4', 'route', 'show', 'table', 'all');
  return { rules, routes };
}

/** Everything not owned by symroute, each object as the exact JSON text `ip` printed. */
function foreign(state: KernelState): { rules: string[]; routes: string[] } {
  const notOwned = (o: Record<string, unknown>) => o.protocol !== OWNED;
  return {
    rules: state.rules.filter(notOwned).map((o) => JSON.stringify(o)),
    routes: state.routes.filter(notOwned).map((o) => JSON.stringify(o)),
  };
}

/** Owned objects anywhere: rules and routes of both families, in every table. */
async function ownedAnywhere(lab: Lab, ns: string): Promise<unknown[]> {
  const all = await Promise.all([
    lab.ipJsonNumeric<{ protocol?: string }>(ns, '-4', 'rule', 'show'),
    lab.ipJsonNumeric<{ protocol?: string }>(ns, '-6', 'rule', 'show'),
    lab.ipJsonNumeric<{ protocol?: string }>(ns, '-4', 'route', 'show', 'table', 'all'),
    lab.ipJsonNumeric<{ protocol?: string }>(ns, '-6', 'route', 'show', 'table', 'all'),
  ]);
  return all.flat().filter((o) => o.protocol === OWNED);
}

/** `ip rule` output with no entry listed twice. */
async function expectNoDuplicateRules(lab: Lab, ns: string): Promise<void> {
  const texts = (await lab.rules(ns)).map((r) => JSON.stringify(r));
  expect(texts.filter((text, i) => texts.indexOf(text) !== i)).toEqual([]);
}

/**
 * Adds a rule the way an old `ip rule add` or a script did: NLM_F_CREATE without NLM_F_EXCL,
 * so the kernel keeps a second identical copy (iproute2 6.x sets EXCL and would refuse).
 */
async function addRuleWithoutExcl(lab: Lab, ns: string, rule: { src: string; table: number; protocol: number }) {
  const dist = (module: string) => JSON.stringify(join(REPO, 'dist', module));
  const script = `
    import { RtnlClient } from ${dist('netlink/client.js')};
    import { ruleToMessage } from ${dist('kernel/objects.js')};
    import { NLM_F_CREATE, RTM_NEWRULE } from ${dist('netlink/constants.js')};
    import { FR_ACT_TO_TBL } from ${dist('domain/constants.js')};
    const client = new RtnlClient();
    const body = ruleToMessage({ family: 4, priority: ${PRIORITY}, table: ${rule.table}, action: FR_ACT_TO_TBL,
      protocol: ${rule.protocol}, src: ${JSON.stringify(rule.src)}, srcLength: 32, dstLength: 0, tos: 0 });
    const [result] = await client.execute([{ type: RTM_NEWRULE, flags: NLM_F_CREATE, body, action: 'test fixture' }]);
    client.close();
    if (!result.ok) throw result.error;
  `;
  await lab.exec(ns, process.execPath, '--input-type=module', '-e', script);
}

describe('restarts and shutdown', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('after kill -9 and changes while down, adopts what is still right and repairs the rest', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 4); // b0..b3 = 198.18.1.1 .. 198.18.1.4
    const ns = t.serverNs;
    const config = lab.writeConfig('');

    const first = await lab.startConverged(ns, config);
    expect(await lab.ownedRuleTexts(ns)).toEqual(
      await wantedRules(lab, ns, { b0: ['198.18.1.1'], b1: ['198.18.1.2'], b2: ['198.18.1.3'], b3: ['198.18.1.4'] }),
    );
    const untouchedRoutes = async () =>
      [...(await lab.routes(ns, await lab.tableOf(ns, 'b0'))), ...(await lab.routes(ns, await lab.tableOf(ns, 'b3')))];
    const untouchedBefore = await untouchedRoutes();
    await first.stop('SIGKILL'); // no chance to clean up or to notice what follows

    // While it is down: b1 loses its address, b2 gains one, and a NIC b4 appears.
    await lab.ip(ns, 'addr', 'del', '198.18.1.2/20', 'dev', 'b1');
    await lab.ip(ns, 'addr', 'add', '198.18.1.20/20', 'dev', 'b2');
    await addSharedSubnetNic(lab, t, 'b4', '198.18.1.5');
    const [table1, table2, table4] = [await lab.tableOf(ns, 'b1'), await lab.tableOf(ns, 'b2'), await lab.tableOf(ns, 'b4')];

    const second = await lab.startConverged(ns, config);
    expect(await lab.ownedRuleTexts(ns)).toEqual(
      await wantedRules(lab, ns, {
        b0: ['198.18.1.1'],
        b2: ['198.18.1.3', '198.18.1.20'],
        b3: ['198.18.1.4'],
        b4: ['198.18.1.5'],
      }),
    );
    await expectNoDuplicateRules(lab, ns);
    expect(await lab.routes(ns, table1)).toEqual([]); // b1's table is empty now

    // Adoption without a blip: the untouched NICs' rules and routes were not re-added,
    // replaced or deleted: nothing in the log names them, and their routes are as before.
    const changes = changesLogged(second);
    const [table0, table3] = [await lab.tableOf(ns, 'b0'), await lab.tableOf(ns, 'b3')];
    const namesUntouched = (c: { text: string; ifname?: unknown }) =>
      c.ifname === 'b0' ||
      c.ifname === 'b3' ||
      /\b198\.18\.1\.[14]\b/.test(c.text) ||
      new RegExp(`\\b(lookup|table) (${table0}|${table3})\\b`).test(c.text);
    expect(changes.filter(namesUntouched)).toEqual([]);
    expect(await untouchedRoutes()).toEqual(untouchedBefore);
    // Exactly the repairs the three changes call for (the kernel itself dropped b1's route
    // when its source address went away).
    expect(changes.map((c) => c.text).sort()).toEqual(
      [
        `deleted rule from 198.18.1.2 lookup ${table1} pref ${PRIORITY}`,
        `added rule from 198.18.1.20 lookup ${table2} pref ${PRIORITY}`,
        `added route 198.18.0.0/20 dev b4 table ${table4} scope link src 198.18.1.5`,
        `added rule from 198.18.1.5 lookup ${table4} pref ${PRIORITY}`,
      ].sort(),
    );

    // And traffic agrees: every address the server now has answers host A.
    const addresses = ['198.18.1.1', '198.18.1.3', '198.18.1.20', '198.18.1.4', '198.18.1.5'];
    expect(await lab.reachable(t.clientNs, addresses)).toEqual(addresses);
  });

  it('leaves what it installed in place on SIGTERM by default', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(''));
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(3);
    const before = await everyObject(lab, t.serverNs);

    expect(await daemon.stop('SIGTERM')).toBe(0);

    // on_exit defaults to keep: replies keep working while symroute is restarted or upgraded.
    expect(await everyObject(lab, t.serverNs)).toEqual(before);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
  });

  it('with on_exit: remove, removes everything it owns on SIGTERM and nothing else', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig('on_exit: remove\n'));
    const before = await everyObject(lab, t.serverNs);
    expect(before.rules.filter((r) => r.protocol === OWNED)).toHaveLength(3);
    expect(before.routes.filter((r) => r.protocol === OWNED)).toHaveLength(3);

    expect(await daemon.stop('SIGTERM')).toBe(0);

    expect(await ownedAnywhere(lab, t.serverNs)).toEqual([]);
    expect(foreign(await everyObject(lab, t.serverNs))).toEqual(foreign(before));
  });

  it('never touches foreign rules and routes: start, kill -9, restart, SIGTERM with on_exit: remove', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    const table0 = await lab.tableOf(ns, 'b0');
    // A foreign rule next to our priorities (P-5 .. P+162; at them, start is refused:
    // collisions.test.ts), a foreign rule with our selector and our table but without
    // proto 83 (just after them), and a foreign route in a foreign table.
    await lab.ip(ns, 'rule', 'add', 'from', '203.0.113.5', 'lookup', '77', 'pref', '30164');
    await lab.ip(ns, 'rule', 'add', 'from', t.serverAddresses[0]!, 'lookup', String(table0), 'pref', '30163');
    await lab.ip(ns, 'route', 'add', '203.0.113.0/24', 'dev', 'b0', 'table', '77');
    const foreignBefore = foreign(await everyObject(lab, ns));
    // The snapshot really holds them, so comparing it is not vacuous.
    expect(foreignBefore.rules).toContain(JSON.stringify({ priority: 30164, src: '203.0.113.5', table: '77' }));
    expect(foreignBefore.rules).toContain(
      JSON.stringify({ priority: 30163, src: t.serverAddresses[0], table: String(table0) }),
    );
    expect(foreignBefore.routes).toContain(
      JSON.stringify({ dst: '203.0.113.0/24', dev: 'b0', table: '77', scope: 'link', flags: [] }),
    );
    const expectForeignUnchanged = async () => expect(foreign(await everyObject(lab, ns))).toEqual(foreignBefore);
    const config = lab.writeConfig('on_exit: remove\n');

    const first = await lab.startConverged(ns, config);
    expect(await lab.ownedRules(ns)).toHaveLength(3);
    await expectForeignUnchanged();

    await first.stop('SIGKILL');
    await expectForeignUnchanged();

    const second = await lab.startConverged(ns, config);
    expect(await lab.ownedRules(ns)).toHaveLength(3);
    await expectNoDuplicateRules(lab, ns);
    await expectForeignUnchanged();

    expect(await second.stop('SIGTERM')).toBe(0);
    expect(await ownedAnywhere(lab, ns)).toEqual([]);
    await expectForeignUnchanged();
  });

  it('at start removes a leftover owned rule and reduces a duplicated wanted rule to one', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const ns = t.serverNs;
    const table0 = await lab.tableOf(ns, 'b0');
    // Left over from an earlier run: owned (proto 83) but wanted by nothing now.
    await lab.ip(ns, 'rule', 'add', 'from', '198.18.9.9', 'lookup', '1999', 'pref', '30000', 'proto', '83');
    // The rule b0 wants, twice.
    await addRuleWithoutExcl(lab, ns, { src: '198.18.1.1', table: table0, protocol: 83 });
    await addRuleWithoutExcl(lab, ns, { src: '198.18.1.1', table: table0, protocol: 83 });
    expect(await lab.ownedRuleTexts(ns)).toEqual([
      `from 198.18.1.1 lookup ${table0} pref ${PRIORITY}`,
      `from 198.18.1.1 lookup ${table0} pref ${PRIORITY}`,
      `from 198.18.9.9 lookup 1999 pref ${PRIORITY}`,
    ]);

    const daemon = await lab.startConverged(ns, lab.writeConfig(''));

    expect(await lab.ownedRuleTexts(ns)).toEqual(
      await wantedRules(lab, ns, { b0: ['198.18.1.1'], b1: ['198.18.1.2'], b2: ['198.18.1.3'] }),
    );
    await expectNoDuplicateRules(lab, ns);
    const ruleChanges = changesLogged(daemon)
      .map((c) => c.text)
      .filter((c) => c.includes(' rule '));
    expect(ruleChanges).toContain(`deleted rule from 198.18.9.9 lookup 1999 pref ${PRIORITY}`);
    // One copy of b0's rule deleted, the other adopted as is: never deleted both and re-added.
    expect(ruleChanges.filter((c) => c.includes('from 198.18.1.1 '))).toEqual([
      `deleted rule from 198.18.1.1 lookup ${table0} pref ${PRIORITY}`,
    ]);
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
  });
});
