// The operator commands end to end: plan, status, check-config, explain, demo, and the
// command line itself (--help, --version, usage errors). Each runs the real CLI (dist/cli.js)
// inside network namespaces the test builds; `ip -json` is the independent judge of what the
// kernel holds, so a read-only command that wrote anything would show up as a difference.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExplainJson, StatusJson } from '../../src/commands/inspect.js';
import { Lab, REPO } from '../support/lab.js';
import { buildRoutedSubnets, buildSharedSubnet, type RoutedSubnets } from '../support/topologies.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const TABLE_BASE = 1000;
const PRIORITY = 30000;
const EXIT_USAGE = 2;
const COMMANDS = ['run', 'reload', 'plan', 'status', 'check-config', 'explain', 'demo', 'completion'];

// ---------------------------------------------------------------------------------------
// Helpers

/** The table symroute uses for each NIC: table.base + ifindex (nothing is pinned here). */
function tablesOf(lab: Lab, ns: string, nics: readonly string[]): Promise<number[]> {
  return Promise.all(nics.map(async (nic) => TABLE_BASE + (await lab.ifindex(ns, nic))));
}


const linesOf = (text: string): string[] => text.split('\n').filter((line) => line.length > 0);

/** `gateways:` naming each NIC's router address, as an admin would write it. */
function gatewaysConfig(t: RoutedSubnets, override: Record<string, string> = {}): string {
  return ['gateways:', ...t.nics.map((nic, k) => `  ${nic}: {ipv4: ${override[nic] ?? t.gateways[k]}}`)].join('\n') + '\n';
}

// --- demo: runs on the host (it makes its own namespaces), so it is spawned directly ------

interface DemoRun {
  child: ChildProcess;
  prefix: string; // every namespace this demo creates starts with it (NetnsLab's id)
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

const demos: DemoRun[] = [];

function startDemo(args: string[]): DemoRun {
  const child = spawn(process.execPath, [CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const demo: DemoRun = {
    child,
    prefix: `symdemo${child.pid! % 100000}x`,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ? null : code))),
  };
  child.stdout!.on('data', (chunk: Buffer) => (demo.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (demo.stderr += chunk.toString()));
  demos.push(demo);
  return demo;
}

async function netnsNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return linesOf(stdout).map((line) => line.split(' ')[0]!).sort();
}

/** Namespaces whose name starts with `prefix` that were not in `before`. */
async function newNamespaces(before: readonly string[], prefix: string): Promise<string[]> {
  return (await netnsNames()).filter((name) => name.startsWith(prefix) && !before.includes(name));
}

/** Kills demos still running and removes whatever namespaces they left, also after a failure. */
async function cleanupDemos(): Promise<void> {
  for (const demo of demos.splice(0)) {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
    await demo.exited;
    for (const name of await netnsNames()) {
      if (name.startsWith(demo.prefix)) await run('ip', ['netns', 'del', name]).catch(() => undefined);
    }
  }
}

async function waitForOutput(demo: DemoRun, text: string, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!demo.stdout.includes(text)) {
    if (demo.child.exitCode !== null) throw new Error(`demo exited (${demo.child.exitCode}) before "${text}":\n${demo.stdout}\n${demo.stderr}`);
    if (Date.now() > deadline) throw new Error(`no "${text}" from the demo:\n${demo.stdout}\n${demo.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------------------------------

describe('symroute commands', () => {
  let lab: Lab | undefined;
  afterEach(async () => {
    await cleanupDemos();
    await lab?.cleanup();
    lab = undefined;
  });

  describe('plan', () => {
    it('before any run lists every rule and route to add, exits 1 and changes nothing', async () => {
      lab = new Lab();
      const t = await buildSharedSubnet(lab, 3);
      const config = lab.writeConfig('');
      const tables = await tablesOf(lab, t.serverNs, t.nics);
      const before = await lab.kernelState(t.serverNs);

      const result = await lab.runCli(t.serverNs, ['plan', '--config', config]);

      expect(result.code, result.stderr).toBe(1);
      expect(linesOf(result.stdout).sort()).toEqual(
        [
          ...t.nics.map((_, k) => `+ rule from ${t.serverAddresses[k]} lookup ${tables[k]} pref ${PRIORITY}`),
          ...t.nics.map(
            (nic, k) => `+ route 198.18.0.0/20 dev ${nic} table ${tables[k]} scope link src ${t.serverAddresses[k]}`,
          ),
        ].sort(),
      );
      expect(await lab.kernelState(t.serverNs)).toEqual(before);
      expect(await lab.ownedRules(t.serverNs)).toEqual([]);
    });

    it('after run --once says in sync and exits 0; a leftover owned rule shows as a "-" line', async () => {
      lab = new Lab();
      const t = await buildSharedSubnet(lab, 3);
      const config = lab.writeConfig('');
      const once = await lab.runCli(t.serverNs, ['run', '--once', '--config', config]);
      expect(once.code, once.stderr).toBe(0);

      const synced = await lab.runCli(t.serverNs, ['plan', '--config', config]);
      expect(synced.code, synced.stdout + synced.stderr).toBe(0);
      expect(linesOf(synced.stdout)).toEqual(['in sync: 3 interfaces, 3 rules, 3 routes']);
      const syncedJson = await lab.runCli(t.serverNs, ['plan', '--json', '--config', config]);
      expect(syncedJson.code).toBe(0);
      expect(JSON.parse(syncedJson.stdout)).toEqual({ inSync: true, changes: [], interfaces: 3, rules: 3, routes: 3, problems: [] });

      // A rule carrying symroute's protocol that no plan wants: run would delete it.
      await lab.ip(t.serverNs, 'rule', 'add', 'from', '198.18.9.9', 'lookup', '1999', 'pref', String(PRIORITY), 'proto', '83');
      const before = await lab.kernelState(t.serverNs);
      const leftover = await lab.runCli(t.serverNs, ['plan', '--config', config]);
      expect(leftover.code, leftover.stderr).toBe(1);
      expect(linesOf(leftover.stdout)).toEqual([`- rule from 198.18.9.9 lookup 1999 pref ${PRIORITY}`]);
      const leftoverJson = await lab.runCli(t.serverNs, ['plan', '--json', '--config', config]);
      expect(leftoverJson.code).toBe(1);
      expect(JSON.parse(leftoverJson.stdout)).toMatchObject({
        inSync: false,
        changes: [{ op: 'delete', rule: { family: 'ipv4', from: '198.18.9.9/32', table: 1999, priority: PRIORITY, protocol: 83 } }],
      });
      expect(await lab.kernelState(t.serverNs)).toEqual(before);

      // And run does exactly what plan said.
      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);
      expect((await lab.rules(t.serverNs)).filter((r) => r.src === '198.18.9.9')).toEqual([]);
      expect((await lab.runCli(t.serverNs, ['plan', '--config', config])).code).toBe(0);
    });

    it('shows a changed gateway as the old default route going and the new one coming', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const [, , s3Table] = await tablesOf(lab, t.serverNs, t.nics);
      const once = await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig(gatewaysConfig(t))]);
      expect(once.code, once.stderr).toBe(0);

      const changed = lab.writeConfig(gatewaysConfig(t, { s3: '198.18.3.2' }), 'changed.yaml');
      const before = await lab.kernelState(t.serverNs);
      const result = await lab.runCli(t.serverNs, ['plan', '--config', changed]);

      expect(result.code, result.stderr).toBe(1);
      expect(linesOf(result.stdout)).toEqual([
        `- route default via 198.18.3.1 dev s3 table ${s3Table}`,
        `+ route default via 198.18.3.2 dev s3 table ${s3Table}`,
      ]);
      const json = await lab.runCli(t.serverNs, ['plan', '--json', '--config', changed]);
      expect(json.code).toBe(1);
      const gateway = (address: string) => ({
        family: 'ipv4', table: s3Table, dst: '0.0.0.0/0', dev: 's3', gateway: address, scope: 'global', metric: 0, protocol: 83,
      });
      expect(JSON.parse(json.stdout).changes).toEqual([
        { op: 'replace', route: gateway('198.18.3.2'), replaced: gateway('198.18.3.1') },
      ]);
      expect(await lab.kernelState(t.serverNs)).toEqual(before);
    });

    it('refuses a bad config with exit 2 and file:line on stderr', async () => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const bad = lab.writeConfig('# symroute\nrule:\n  priority: 0\n', 'bad.yaml');
      const before = await lab.kernelState(ns);

      const result = await lab.runCli(ns, ['plan', '--config', bad]);

      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(`${bad}:3: rule.priority: expected an integer 6..32603, got 0`);
      expect(await lab.kernelState(ns)).toEqual(before);
    });
  });

  describe('status', () => {
    it('describes each managed interface, with gateways from the config and the main table', async () => {
      lab = new Lab();
      // Per-device defaults in the main table for every NIC; the config names s3's anyway.
      const t = await buildRoutedSubnets(lab, { learnGateways: true });
      const config = lab.writeConfig('gateways:\n  s3: {ipv4: 198.18.3.1}\n');
      const indexes = await Promise.all(t.nics.map((nic) => lab!.ifindex(t.serverNs, nic)));
      const tables = indexes.map((i) => TABLE_BASE + i);
      const source = (k: number) => (t.nics[k] === 's3' ? 'config' : 'main table');

      // Before any run: everything pending.
      const before = await lab.kernelState(t.serverNs);
      const pending = await lab.runCli(t.serverNs, ['status', '--config', config]);
      expect(pending.code, pending.stderr).toBe(1);
      for (const [k, nic] of t.nics.entries()) {
        expect(pending.stdout).toContain(`${nic} (ifindex ${indexes[k]}): table ${tables[k]}, 3 changes pending`);
      }
      const pendingJson = await lab.runCli(t.serverNs, ['status', '--json', '--config', config]);
      expect(pendingJson.code).toBe(1);
      const pendingStatus = JSON.parse(pendingJson.stdout) as StatusJson;
      expect(pendingStatus.inSync).toBe(false);
      for (const i of pendingStatus.interfaces) {
        expect(i.inSync).toBe(false);
        expect(i.pending).toHaveLength(3);
      }
      expect(await lab.kernelState(t.serverNs)).toEqual(before);

      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);

      const text = await lab.runCli(t.serverNs, ['status', '--config', config]);
      expect(text.code, text.stdout + text.stderr).toBe(0);
      for (const [k, nic] of t.nics.entries()) {
        expect(text.stdout).toContain(`${nic} (ifindex ${indexes[k]}): table ${tables[k]}, in sync\n`);
        expect(text.stdout).toContain(
          `  ipv4  ${t.serverAddresses[k]}/24  gateway ${t.gateways[k]} (from ${source(k)})\n`,
        );
        expect(text.stdout).toContain(`  rule   from ${t.serverAddresses[k]} lookup ${tables[k]} pref ${PRIORITY}\n`);
      }
      expect(text.stdout).not.toContain('pending');
      expect(text.stdout).not.toContain('problems:');

      const json = await lab.runCli(t.serverNs, ['status', '--json', '--config', config]);
      expect(json.code, json.stderr).toBe(0);
      const status = JSON.parse(json.stdout) as StatusJson;
      expect(status).toEqual({
        inSync: true,
        interfaces: t.nics.map((nic, k) => ({
          name: nic,
          ifindex: indexes[k],
          table: tables[k],
          inSync: true,
          families: [
            {
              family: 'ipv4',
              addresses: [`${t.serverAddresses[k]}/24`],
              gateway: { address: t.gateways[k], source: source(k) },
              replies: { ok: true, failures: [] },
            },
          ],
          rules: [{ family: 'ipv4', from: `${t.serverAddresses[k]}/32`, table: tables[k], priority: PRIORITY, protocol: 83 }],
          routes: expect.arrayContaining([
            { family: 'ipv4', table: tables[k], dst: '0.0.0.0/0', dev: nic, gateway: t.gateways[k], scope: 'global', metric: 0, protocol: 83 },
            {
              family: 'ipv4',
              table: tables[k],
              dst: `198.18.${k + 1}.0/24`,
              dev: nic,
              scope: 'link',
              prefsrc: t.serverAddresses[k],
              metric: 0,
              protocol: 83,
            },
          ]),
          pending: [],
        })),
        leftovers: [],
        problems: [],
      });
    });

    it('reports a foreign route in a NIC table as a problem and leaves that interface alone', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const config = lab.writeConfig(gatewaysConfig(t));
      const tables = await tablesOf(lab, t.serverNs, t.nics);
      // Someone else's route squatting in the table s2 would get (proto boot, not 83).
      await lab.ip(t.serverNs, 'route', 'add', '203.0.113.0/24', 'dev', 's2', 'table', String(tables[1]));
      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);

      const text = await lab.runCli(t.serverNs, ['status', '--config', config]);
      expect(text.code, text.stdout + text.stderr).toBe(1);
      expect(text.stdout).toMatch(new RegExp(`^s2 \\(ifindex \\d+\\): table ${tables[1]}, left alone \\(collision\\)$`, 'm'));
      for (const nic of ['s1', 's3', 's4']) expect(text.stdout).toMatch(new RegExp(`^${nic} \\(ifindex \\d+\\): table \\d+, in sync$`, 'm'));
      expect(text.stdout).toMatch(/^problems:$/m);
      expect(text.stdout).toContain(`s2: table ${tables[1]} holds a route symroute does not own`);

      const json = await lab.runCli(t.serverNs, ['status', '--json', '--config', config]);
      expect(json.code).toBe(1);
      const status = JSON.parse(json.stdout) as StatusJson;
      expect(status.inSync).toBe(false);
      expect(status.problems).toEqual([expect.stringContaining(`s2: table ${tables[1]} holds a route symroute does not own`)]);
      expect(status.problems[0]).toContain('203.0.113.0/24');
      const s2 = status.interfaces.find((i) => i.name === 's2')!;
      expect(s2).toMatchObject({ table: tables[1], inSync: false, collision: status.problems[0], rules: [], routes: [] });
      for (const i of status.interfaces.filter((i) => i.name !== 's2')) {
        expect(i, i.name).toMatchObject({ inSync: true, pending: [] });
        expect(i.collision).toBeUndefined();
      }
      // The foreign route is still there, alone, and nothing points at its table.
      expect((await lab.routes(t.serverNs, tables[1]!)).map((r) => r.dst)).toEqual(['203.0.113.0/24']);
      expect((await lab.rules(t.serverNs)).filter((r) => r.table === String(tables[1]))).toEqual([]);
    });

    it('lists a leftover owned rule under leftovers and exits 1', async () => {
      lab = new Lab();
      const t = await buildSharedSubnet(lab, 2);
      const config = lab.writeConfig('');
      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);
      await lab.ip(t.serverNs, 'rule', 'add', 'from', '198.18.9.9', 'lookup', '1999', 'pref', String(PRIORITY), 'proto', '83');

      const json = await lab.runCli(t.serverNs, ['status', '--json', '--config', config]);
      expect(json.code).toBe(1);
      const status = JSON.parse(json.stdout) as StatusJson;
      expect(status).toMatchObject({ inSync: false, problems: [] });
      expect(status.leftovers).toEqual([
        { op: 'delete', rule: { family: 'ipv4', from: '198.18.9.9/32', table: 1999, priority: PRIORITY, protocol: 83 } },
      ]);
      expect(status.interfaces.map((i) => i.inSync)).toEqual([true, true]);

      const text = await lab.runCli(t.serverNs, ['status', '--config', config]);
      expect(text.code).toBe(1);
      expect(text.stdout).toContain(`pending - rule from 198.18.9.9 lookup 1999 pref ${PRIORITY}`);
    });
  });

  describe('check-config', () => {
    it('says FILE: OK for a valid file and exits 0', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const file = lab.writeConfig(
        'rule: {priority: 30000, match: prefix}\ntable: {base: 2000, pinned: {eth9: 4242}}\n' +
          'gateways:\n  eth0: {ipv4: 198.51.100.1, ipv6: "2001:db8::1"}\nmetrics: {listen: false}\n',
      );
      const result = await lab.runCli(ns, ['check-config', file]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe(`${file}: OK\n`);
      expect(result.stderr).toBe('');
    });

    it('prints every problem as FILE:LINE: key: message on stderr and exits 2', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const file = lab.writeConfig(
        ['# three mistakes', 'rule:', '  priority: 0', 'gateways:', '  eth0: {ipv4: "2001:db8::1"}', 'log: {level: loud}'].join('\n') + '\n',
      );
      const result = await lab.runCli(ns, ['check-config', file]);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      const problems = linesOf(result.stderr).filter((line) => line.startsWith(`${file}:`));
      expect(problems, result.stderr).toEqual([
        expect.stringMatching(new RegExp(`^${file}:3: rule\\.priority: expected an integer 6\\.\\.32603, got 0`)),
        expect.stringMatching(new RegExp(`^${file}:5: gateways\\.eth0\\.ipv4: .*IPv6 address belongs under ipv6`)),
        expect.stringMatching(new RegExp(`^${file}:6: log\\.level: expected one of .*got "loud"`)),
      ]);
    });

    it('exits 2 naming the path of a file that does not exist', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const missing = join(lab.dir, 'nowhere.yaml');
      const result = await lab.runCli(ns, ['check-config', missing]);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(`${missing}: cannot read config`);
      expect(result.stderr).toMatch(/no such file/i);
    });
  });

  describe('explain (Case 1, gateways from the config)', () => {
    it('after run --once names the symroute rule, its table, dev s3 and via 198.18.3.1, exit 0', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const config = lab.writeConfig(gatewaysConfig(t));
      const [, , s3Table] = await tablesOf(lab, t.serverNs, t.nics);
      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);

      const result = await lab.runCli(t.serverNs, ['explain', t.clientAddress, '--from', '198.18.3.10', '--config', config]);

      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(linesOf(result.stdout)).toEqual([
        `reply from 198.18.3.10 to ${t.clientAddress}:`,
        `  rule   from 198.18.3.10 lookup ${s3Table} pref ${PRIORITY} (symroute)`,
        `  table  ${s3Table}`,
        '  dev    s3',
        '  via    198.18.3.1',
        '198.18.3.10 belongs to s3: the reply leaves through the NIC that owns the address',
      ]);
      const json = await lab.runCli(t.serverNs, ['explain', t.clientAddress, '--from', '198.18.3.10', '--json', '--config', config]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout) as ExplainJson).toEqual({
        from: '198.18.3.10',
        to: t.clientAddress,
        owners: ['s3'],
        rule: { family: 'ipv4', from: '198.18.3.10/32', table: s3Table, priority: PRIORITY, protocol: 83, symroute: true },
        table: s3Table,
        dev: 's3',
        gateway: '198.18.3.1',
        correct: true,
      });
      // The kernel agrees, table included (`ip route get` asks for it with RTM_F_LOOKUP_TABLE).
      expect(await lab.routeGet(t.serverNs, t.clientAddress, '198.18.3.10')).toMatchObject({
        dev: 's3',
        gateway: '198.18.3.1',
        table: String(s3Table),
      });
    });

    it('before the daemon ran reports dev s1 and that the address belongs to s3, exit 1', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const config = lab.writeConfig(gatewaysConfig(t));
      const before = await lab.kernelState(t.serverNs);

      const result = await lab.runCli(t.serverNs, ['explain', t.clientAddress, '--from', '198.18.3.10', '--config', config]);

      expect(result.code, result.stdout + result.stderr).toBe(1);
      expect(result.stdout).toContain('  dev    s1\n');
      expect(result.stdout).toContain('  via    198.18.1.1\n');
      expect(result.stdout).toContain('  table  254\n');
      expect(result.stdout).not.toContain('(symroute)');
      expect(result.stdout).toContain('198.18.3.10 belongs to s3, but the reply leaves through s1');
      const json = await lab.runCli(t.serverNs, ['explain', t.clientAddress, '--from', '198.18.3.10', '--json', '--config', config]);
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout)).toMatchObject({ owners: ['s3'], table: 254, dev: 's1', gateway: '198.18.1.1', correct: false });
      expect((JSON.parse(json.stdout) as ExplainJson).rule).toMatchObject({ from: '0.0.0.0/0', table: 254, priority: 32766, symroute: false });
      expect(await lab.kernelState(t.serverNs)).toEqual(before);
    });

    it('exits 1 with a clear message for a source that is not an address of this host', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const config = lab.writeConfig(gatewaysConfig(t));
      expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', config])).code).toBe(0);

      const result = await lab.runCli(t.serverNs, ['explain', t.clientAddress, '--from', '198.18.3.99', '--config', config]);

      expect(result.code).toBe(1);
      const output = result.stdout + result.stderr;
      // Not the kernel's bare "network is unreachable": the admin must learn that the source
      // is not one of this host's addresses, so no reply can come from it.
      expect(output).toMatch(/198\.18\.3\.99 is not an? (local )?address of this host/);
    });

    it('exits 2 for addresses of different families', async () => {
      lab = new Lab();
      const t = await buildRoutedSubnets(lab);
      const result = await lab.runCli(t.serverNs, ['explain', '2001:db8::10', '--from', '198.18.3.10']);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain('explain needs two addresses of one family');
    });
  });

  describe('explain (IPv6)', () => {
    it('names the rule, table, device and router-advertised gateway, taking addresses in any case', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const peer = await lab.namespace('p');
      await lab.veth(ns, 'e1', peer, 'f1');
      await lab.ip(ns, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'e1', 'nodad');
      await lab.ip(ns, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'e1');
      const config = lab.writeConfig('');
      expect((await lab.runCli(ns, ['run', '--once', '--config', config])).code).toBe(0);
      const table = TABLE_BASE + (await lab.ifindex(ns, 'e1'));
      const result = await lab.runCli(ns, ['explain', '2001:DB8:9::1', '--from', '2001:DB8:1::10', '--config', config]);
      expect(result.code, result.stderr).toBe(0);
      expect(linesOf(result.stdout)).toEqual([
        'reply from 2001:db8:1::10 to 2001:db8:9::1:',
        `  rule   from 2001:db8:1::10 lookup ${table} pref ${PRIORITY} (symroute)`,
        `  table  ${table}`,
        '  dev    e1',
        '  via    fe80::1',
        '2001:db8:1::10 belongs to e1: the reply leaves through the NIC that owns the address',
      ]);
    });
  });

  describe('demo', () => {
    it('runs to completion: 1 of 8, then 8 of 8, hot-adds b8, 9 of 9, and leaves no namespace behind', async () => {
      lab = new Lab();
      const before = await netnsNames();
      const demo = startDemo([]);
      const code = await demo.exited;

      expect(code, demo.stdout + demo.stderr).toBe(0);
      expect(demo.stdout).toMatch(/^before symroute: host A reaches 1 of 8\b/m);
      expect(demo.stdout).toMatch(/^with symroute: host A reaches 8 of 8\b/m);
      expect(demo.stdout).toMatch(/^hot-added b8 \(198\.18\.1\.9\): symroute converged in \d+(\.\d+)? ms$/m);
      expect(demo.stdout).toMatch(/^after adding b8: host A reaches 9 of 9\b/m);
      expect(await newNamespaces(before, demo.prefix)).toEqual([]);
      expect(await newNamespaces(before, 'symdemo')).toEqual([]);
    });

    it('works with --nics 3', async () => {
      lab = new Lab();
      const before = await netnsNames();
      const demo = startDemo(['--nics', '3']);
      const code = await demo.exited;

      expect(code, demo.stdout + demo.stderr).toBe(0);
      expect(demo.stdout).toMatch(/^before symroute: host A reaches 1 of 3\b/m);
      expect(demo.stdout).toMatch(/^with symroute: host A reaches 3 of 3\b/m);
      expect(demo.stdout).toMatch(/^hot-added b3 \(198\.18\.1\.4\): symroute converged in \d+(\.\d+)? ms$/m);
      expect(demo.stdout).toMatch(/^after adding b3: host A reaches 4 of 4\b/m);
      expect(await newNamespaces(before, 'symdemo')).toEqual([]);
    });

    it('refuses --nics 0 with exit 2 and creates nothing', async () => {
      lab = new Lab();
      const before = await netnsNames();
      const demo = startDemo(['--nics', '0']);
      expect(await demo.exited).toBe(EXIT_USAGE);
      expect(demo.stderr).toContain('--nics');
      expect(demo.stderr).toContain('Usage: symroute demo');
      expect(await newNamespaces(before, 'symdemo')).toEqual([]);
    });

    it('removes its namespaces on Ctrl-C and exits 130', async () => {
      lab = new Lab();
      const before = await netnsNames();
      const demo = startDemo([]);
      await waitForOutput(demo, 'before symroute');
      // The demo's namespaces exist while it runs.
      expect((await newNamespaces(before, demo.prefix)).length).toBeGreaterThan(0);

      demo.child.kill('SIGINT');
      const code = await demo.exited;

      expect(code, demo.stdout + demo.stderr).toBe(130);
      expect(demo.stderr).toContain('interrupted');
      expect(await newNamespaces(before, demo.prefix)).toEqual([]);
      expect(await newNamespaces(before, 'symdemo')).toEqual([]);
    });
  });

  describe('log levels', () => {
    const levelsLogged = (stdout: string) => new Set(linesOf(stdout).map((line) => (JSON.parse(line) as { level: number }).level));

    it('--log-level debug adds debug lines; warn leaves only warnings and errors', async () => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const config = lab.writeConfig('');
      const debug = await lab.runCli(ns, ['run', '--once', '--config', config, '--log-level', 'debug']);
      expect(debug.code, debug.stderr).toBe(0);
      expect(levelsLogged(debug.stdout)).toContain(20);
      await lab.ip(ns, 'addr', 'add', '198.18.5.11/24', 'dev', 'n0'); // something to change, so something to log
      const warn = await lab.runCli(ns, ['run', '--once', '--config', config, '--log-level', 'warn']);
      expect(warn.code, warn.stderr).toBe(0);
      expect([...levelsLogged(warn.stdout)].filter((level) => level < 40)).toEqual([]);
      expect(await lab.ownedRules(ns)).toHaveLength(2);
    });

    it('log.level in the config applies, and --log-level overrides it', async () => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const config = lab.writeConfig('log:\n  level: error\n');
      const quiet = await lab.runCli(ns, ['run', '--once', '--config', config]);
      expect(quiet.code, quiet.stderr).toBe(0);
      expect(quiet.stdout).toBe('');
      await lab.ip(ns, 'addr', 'add', '198.18.5.11/24', 'dev', 'n0');
      const loud = await lab.runCli(ns, ['run', '--once', '--config', config, '--log-level', 'info']);
      expect(loud.stdout).toContain('added rule from 198.18.5.11 lookup');
    });

    it('--log-format text prints readable lines, json (the default off a terminal) JSON lines', async () => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const config = lab.writeConfig('');
      const text = await lab.runCli(ns, ['run', '--once', '--log-format', 'text', '--config', config]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  added rule from 198\.18\.5\.10 lookup \d+ pref 30000 \(n0\)  .*\bifname=n0\b/m);
      expect(text.stdout).toMatch(/^\S+ INFO  converged in .*durationSeconds=[\d.e-]+/m);
      expect(text.stdout, text.stdout).not.toMatch(/^\{/m);
      for (const args of [['--log-format', 'json'], []]) {
        const json = await lab.runCli(ns, ['run', '--once', ...args, '--config', config]);
        expect(json.code).toBe(0);
        for (const line of linesOf(json.stdout)) expect(JSON.parse(line)).toMatchObject({ level: expect.any(Number), msg: expect.any(String) });
      }
      const bad = await lab.runCli(ns, ['run', '--once', '--log-format', 'pretty', '--config', config]);
      expect(bad.code).toBe(EXIT_USAGE);
      expect(bad.stderr).toContain('--log-format: expected one of text, json, got "pretty"');
    });

    it('an unknown --log-level is a usage error that changes nothing', async () => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const result = await lab.runCli(ns, ['run', '--once', '--log-level', 'loud', '--config', lab.writeConfig('')]);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stderr).toContain('--log-level: expected one of fatal, error, warn, info, debug, trace, got "loud"');
      expect(await lab.ownedRules(ns)).toEqual([]);
    });
  });

  describe('the command line', () => {
    it.each(COMMANDS)('%s --help prints its usage and exits 0', async (command) => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const result = await lab.runCli(ns, [command, '--help']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.startsWith(`Usage: symroute ${command}`), result.stdout).toBe(true);
      expect(result.stderr).toBe('');
    });

    it('--help and no arguments print the command list and exit 0', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      for (const args of [['--help'], []]) {
        const result = await lab.runCli(ns, args);
        expect(result.code).toBe(0);
        expect(result.stdout).toMatch(/^Usage: symroute <command>/);
        for (const command of COMMANDS) expect(result.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
      }
    });

    it("--version prints package.json's version", async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const result = await lab.runCli(ns, ['--version']);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`${VERSION}\n`);
    });

    it('an unknown command exits 2 with the usage', async () => {
      lab = new Lab();
      const ns = await lab.namespace('h');
      const result = await lab.runCli(ns, ['frobnicate']);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain('unknown command "frobnicate"');
      expect(result.stderr).toContain('Usage: symroute <command>');
    });

    it.each([
      ['plan', '--bogus'],
      ['status', '--verbose'],
      ['check-config', '--json'],
      ['demo', '--fast'],
    ])('an unknown option (%s %s) exits 2 with the usage', async (command, option) => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const before = await lab.kernelState(ns);
      const result = await lab.runCli(ns, [command, option]);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(option);
      expect(result.stderr).toContain(`Usage: symroute ${command}`);
      expect(await lab.kernelState(ns)).toEqual(before);
    });

    it.each([
      ['plan', 'extra'],
      ['status', 'extra'],
      ['run', 'extra'],
      ['demo', 'extra'],
      ['check-config', 'a.yaml', 'b.yaml'],
      ['explain', '--from', '198.18.5.10'],
      ['explain', '198.51.100.10', '203.0.113.10', '--from', '198.18.5.10'],
    ])('a wrong number of arguments (%s %s) exits 2 with the usage', async (command, ...args) => {
      lab = new Lab();
      const ns = await lab.hostWithNic();
      const before = await lab.kernelState(ns);
      const result = await lab.runCli(ns, [command, ...args]);
      expect(result.code).toBe(EXIT_USAGE);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/expected \d+( to \d+)? arguments, got \d+/);
      expect(result.stderr).toContain(`Usage: symroute ${command}`);
      expect(await lab.kernelState(ns)).toEqual(before);
    });
  });
});
