// Collisions up front: a rule priority or a table id that objects symroute does not own
// already use is refused, naming them and a free alternative that then works.
import { afterEach, describe, expect, it } from 'vitest';
import { Lab } from '../support/lab.js';
import { buildSharedSubnet } from '../support/topologies.js';

describe('collisions with foreign objects', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('refuses a rule.priority that foreign rules use, naming them and a free priority that then works', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    await lab.ip(t.serverNs, 'rule', 'add', 'from', '203.0.113.5', 'lookup', '77', 'pref', '30000', 'proto', 'static');
    await lab.ip(t.serverNs, 'rule', 'add', 'to', '203.0.113.0/24', 'lookup', '78', 'pref', '29993');
    const refused = await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig('metrics: {listen: false}\n')]);
    expect(refused.code).toBe(2);
    const free = /such as rule\.priority: (\d+)/.exec(refused.stderr)?.[1];
    expect(refused.stderr).toBe(
      'symroute: config refused:\n' +
        "rule.priority: 30000 (symroute's rules take 29995..30162) already holds rules symroute does not own: " +
        `from 203.0.113.5 lookup 77 pref 30000 proto 4; choose a free one, such as rule.priority: ${free}\n`,
    );
    // None of P-5 .. P+162 may be in use: from 29831 up to 30005 each reaches 29993 or 30000,
    // 30006 is the nearest free one (30001 .. 30168).
    expect(free).toBe('30006');
    expect(await lab.ownedRules(t.serverNs)).toEqual([]);

    const status = await lab.runCli(t.serverNs, ['status', '--config', lab.writeConfig('metrics: {listen: false}\n', 's.yaml')]);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain("problems:\n  rule.priority: 30000 (symroute's rules take 29995..30162) already holds rules");

    const moved = await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig(`rule: {priority: ${free}}\nmetrics: {listen: false}\n`, 'm.yaml')]);
    expect(moved.code, moved.stderr).toBe(0);
    expect((await lab.ownedRules(t.serverNs)).map((r) => r.priority)).toEqual([30006, 30006]);
  });

  it('leaves a table holding a foreign route alone, naming a free table id and table.base that then work', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const b1 = await lab.tableOf(t.serverNs, 'b1');
    await lab.ip(t.serverNs, 'route', 'add', '203.0.113.0/24', 'dev', 'b1', 'table', String(b1));
    const config = lab.writeConfig('metrics: {listen: false}\n');
    const status = await lab.runCli(t.serverNs, ['status', '--config', config]);
    const suggestion = /pin a free one with table\.pinned\.b1: (\d+), or move every table with table\.base: (\d+)\)/.exec(status.stdout);
    expect(suggestion, status.stdout).not.toBeNull();
    const [, id, base] = suggestion!;
    expect(status.stdout).toContain(`b1: table ${b1} holds a route symroute does not own (203.0.113.0/24 dev b1 table ${b1} scope link proto 3)`);

    const pinned = await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig(`table: {pinned: {b1: ${id}}}\nmetrics: {listen: false}\n`, 'p.yaml')]);
    expect(pinned.code, pinned.stdout).toBe(0);
    expect((await lab.ownedRules(t.serverNs)).map((r) => r.table)).toContain(id);

    const rebased = await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig(`table: {base: ${base}}\nmetrics: {listen: false}\n`, 'b.yaml')]);
    expect(rebased.code, rebased.stdout).toBe(0);
    const tables = await Promise.all(t.nics.map(async (nic) => String((await lab.tableOf(t.serverNs, nic)) - 1000 + Number(base))));
    expect((await lab.ownedRules(t.serverNs)).map((r) => r.table).sort()).toEqual(tables.sort());
    expect(await lab.routes(t.serverNs, b1)).toHaveLength(1); // the foreign route, untouched
  });
});
