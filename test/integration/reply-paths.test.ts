// Reply paths proved on the live host: the daemon asks the kernel after each pass whether each
// managed address's replies leave by its NIC and whether requests to it pass rp_filter, and
// says so in symroute_reply_path_ok, its log and `symroute verify`. Each fault below is planted
// by hand in Case 2 (NICs sharing one subnet, strict rp_filter) or Case 1 (NICs with
// gateways); the NICs named must be exactly those a real TCP client can no longer reach, found
// by the pass the fault's own notification starts (the periodic sweep is off), and healed by
// the pass that follows its removal. Addresses from 198.18.0.0/15 and 198.51.100.0/24.
import { afterEach, describe, expect, it } from 'vitest';
import type { VerifyJson } from '../../src/commands/inspect.js';
import { eventually, Lab, type DaemonProcess } from '../support/lab.js';
import { addSharedSubnetNic, buildRoutedSubnets, buildSharedSubnet } from '../support/topologies.js';

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

const NO_SWEEP = 'verify:\n  interval: false\n';

/** symroute_reply_path_ok per NIC (IPv4), as the daemon in `ns` serves it. */
async function replyPathOk(l: Lab, ns: string): Promise<Record<string, number>> {
  const text = await l.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
  const ok: Record<string, number> = {};
  for (const [, ifname, value] of text.matchAll(/^symroute_reply_path_ok\{ifname="([^"]+)",family="ipv4"\} (\d)$/gm)) ok[ifname!] = Number(value);
  return ok;
}

/** The NICs `symroute verify --json` names as broken, and its exit code. */
async function verifyBroken(l: Lab, ns: string): Promise<{ code: number; broken: string[]; reasons: string[] }> {
  const result = await l.runCli(ns, ['verify', '--json']);
  const answer = JSON.parse(result.stdout) as VerifyJson;
  const broken = answer.paths.filter((p) => !p.ok);
  return {
    code: result.code,
    broken: [...new Set(broken.map((p) => p.ifname))].sort(),
    reasons: [...new Set(broken.map((p) => p.reason!))].sort(),
  };
}

/**
 * Plants a fault, then checks that the daemon's metric, `symroute verify` and a real client
 * agree on which NICs' addresses are cut off; removes it and checks that everything heals.
 */
async function expectFault(
  l: Lab,
  t: { serverNs: string; clientNs: string; nics: string[]; serverAddresses: string[] },
  daemon: DaemonProcess,
  fault: { plant: string[][]; remove: string[][]; broken: string[]; reasons: string[] },
): Promise<void> {
  const all = Object.fromEntries(t.nics.map((nic) => [nic, 1]));
  const warningsBefore = daemon.records.filter((r) => r.level === 40).length;
  for (const command of fault.plant) await l.ip(t.serverNs, ...command);
  const expected = { ...all, ...Object.fromEntries(fault.broken.map((nic) => [nic, 0])) };
  await eventually(async () => expect(await replyPathOk(l, t.serverNs)).toEqual(expected), 10_000);
  expect(await verifyBroken(l, t.serverNs)).toEqual({ code: 1, broken: fault.broken, reasons: fault.reasons });
  const reachable = await l.reachable(t.clientNs, t.serverAddresses, 1500);
  expect(t.nics.filter((_, k) => !reachable.includes(t.serverAddresses[k]!))).toEqual(fault.broken);
  // One warning per broken path, each naming its NIC.
  const warnings = daemon.records.filter((r) => r.level === 40).slice(warningsBefore);
  expect([...new Set(warnings.map((w) => w.ifname))].sort(), daemon.log()).toEqual(fault.broken);
  for (const warning of warnings) expect(warning.msg).toMatch(/^reply path broken on \S+: /);

  for (const command of fault.remove) await l.ip(t.serverNs, ...command);
  await eventually(async () => expect(await replyPathOk(l, t.serverNs)).toEqual(all), 10_000);
  expect(await verifyBroken(l, t.serverNs)).toEqual({ code: 0, broken: [], reasons: [] });
  expect(await l.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
  expect(daemon.messages()).toContainEqual(expect.stringMatching(/^reply path healed on /));
}

describe('reply paths, verified by the kernel', () => {
  it('in Case 2: a foreign rule before symroute\'s, a prohibit rule and a to-main rule are each found, matching a real client', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 4);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(NO_SWEEP));
    expect(await replyPathOk(lab, t.serverNs)).toEqual({ b0: 1, b1: 1, b2: 1, b3: 1 });
    expect(await verifyBroken(lab, t.serverNs)).toEqual({ code: 0, broken: [], reasons: [] });
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);

    // Someone's catch-all table, consulted before symroute's rules: only b0 still answers.
    await expectFault(lab, t, daemon, {
      plant: [['route', 'add', '198.18.0.0/20', 'dev', 'b0', 'table', '500'], ['rule', 'add', 'from', 'all', 'lookup', '500', 'pref', '100']],
      remove: [['rule', 'del', 'pref', '100'], ['route', 'flush', 'table', '500']],
      broken: ['b1', 'b2', 'b3'],
      reasons: ['egress_other_device', 'ingress_rp_filter'],
    });
    // A prohibit rule for one address.
    await expectFault(lab, t, daemon, {
      plant: [['rule', 'add', 'from', t.serverAddresses[2]!, 'prohibit', 'pref', '101']],
      remove: [['rule', 'del', 'pref', '101']],
      broken: ['b2'],
      reasons: ['egress_prohibited', 'ingress_rp_filter'],
    });
    // `to <subnet> lookup main`, as someone adds for "their" subnet: main prefers one NIC.
    const [mainNic] = (await lab.ipJson<Array<{ dev: string }>>(t.serverNs, 'route', 'get', '198.18.0.1')).map((r) => r.dev);
    await expectFault(lab, t, daemon, {
      plant: [['rule', 'add', 'to', '198.18.0.0/20', 'lookup', 'main', 'pref', '102']],
      remove: [['rule', 'del', 'pref', '102']],
      broken: t.nics.filter((nic) => nic !== mainNic),
      reasons: ['egress_other_device', 'ingress_rp_filter'],
    });
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('in Case 2 numbered from the bottom of the subnet (.1 to .8): every NIC is still verified, past the host\'s own addresses', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 0);
    for (let k = 0; k < 8; k++) await addSharedSubnetNic(lab, t, `b${k}`, `198.18.0.${k + 1}`);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(NO_SWEEP));
    const all = Object.fromEntries(t.nics.map((nic) => [nic, 1]));
    await eventually(async () => expect(await replyPathOk(lab!, t.serverNs)).toEqual(all), 10_000);
    const verify = JSON.parse((await lab.runCli(t.serverNs, ['verify', '--json'])).stdout) as VerifyJson;
    expect(verify.paths).toHaveLength(16);
    expect(new Set(verify.paths.map((p) => p.peer))).toEqual(new Set(['198.18.0.9']));
    await expectFault(lab, t, daemon, {
      plant: [['rule', 'add', 'from', t.serverAddresses[2]!, 'prohibit', 'pref', '101']],
      remove: [['rule', 'del', 'pref', '101']],
      broken: ['b2'],
      reasons: ['egress_prohibited', 'ingress_rp_filter'],
    });
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('in Case 1: NICs with gateways, a client beyond a router, and a foreign default table', async () => {
    lab = new Lab();
    const t = await buildRoutedSubnets(lab, { serverRpFilter: true, learnGateways: true });
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(NO_SWEEP));
    const verify = JSON.parse((await lab.runCli(t.serverNs, ['verify', '--json'])).stdout) as VerifyJson;
    // Per address: a neighbour each way, and one off-link destination through the gateway.
    expect(verify.paths.filter((p) => p.ifname === 's2').map((p) => [p.direction, p.peer, p.offLink])).toEqual([
      ['egress', '198.18.2.1', false],
      ['ingress', '198.18.2.1', false],
      ['egress', '203.0.113.254', true],
    ]);
    await expectFault(lab, t, daemon, {
      plant: [['route', 'add', 'default', 'via', '198.18.1.1', 'table', '500'], ['rule', 'add', 'from', 'all', 'lookup', '500', 'pref', '100']],
      remove: [['rule', 'del', 'pref', '100'], ['route', 'flush', 'table', '500']],
      broken: ['s2', 's3', 's4'],
      reasons: ['egress_other_device', 'ingress_rp_filter'],
    });
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('names a NIC whose table someone else holds as a collision when its replies break, matching a real client', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 4);
    // A route of someone else's in b2's table before symroute starts: it leaves the table,
    // and b2, alone, so b2's replies follow main out through b0.
    const table = String(await lab.tableOf(t.serverNs, 'b2'));
    const foreign = ['203.0.113.0/24', 'dev', 'b2', 'table', table];
    await lab.ip(t.serverNs, 'route', 'add', ...foreign);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(NO_SWEEP));
    const all = { b0: 1, b1: 1, b2: 1, b3: 1 };
    await eventually(async () => expect(await replyPathOk(lab!, t.serverNs)).toEqual({ ...all, b2: 0 }), 10_000);
    expect(await verifyBroken(lab, t.serverNs)).toEqual({ code: 1, broken: ['b2'], reasons: ['table_collision'] });
    expect(await lab.reachable(t.clientNs, t.serverAddresses, 1500)).toEqual(t.serverAddresses.filter((_, k) => k !== 2));
    // The collision is the NIC's problem, said by the planner: no warning per path.
    expect(daemon.messages()).toContainEqual(expect.stringMatching(/^reply path of b2 broken, its table left alone: .* would leave by b0, not b2/));
    expect(daemon.records.filter((r) => r.level === 40 && r.msg.startsWith('reply path'))).toEqual([]);

    // Given back: symroute takes the table, and b2 answers again.
    await lab.ip(t.serverNs, 'route', 'del', ...foreign);
    await eventually(async () => expect(await replyPathOk(lab!, t.serverNs)).toEqual(all), 10_000);
    expect(await verifyBroken(lab, t.serverNs)).toEqual({ code: 0, broken: [], reasons: [] });
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);

    // Taken again while symroute's own routes are in it: the table is left alone, but the
    // kernel still sends b2's replies through b2, and that is what is reported.
    await lab.ip(t.serverNs, 'route', 'add', ...foreign);
    await eventually(async () => expect((await lab!.runCli(t.serverNs, ['status'])).stdout).toContain('holds a route symroute does not own'));
    expect(await replyPathOk(lab, t.serverNs)).toEqual(all);
    expect(await verifyBroken(lab, t.serverNs)).toEqual({ code: 0, broken: [], reasons: [] });
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('verifies again when rp_filter changes, with no pass to wait for (netconf notifications)', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    // No IPv6 on the NICs: no address notifications (DAD) to start passes of their own.
    const loose = ['net.ipv4.conf.all.rp_filter=0', ...t.nics.flatMap((nic) => [`net.ipv4.conf.${nic}.rp_filter=0`, `net.ipv6.conf.${nic}.disable_ipv6=1`])];
    await lab.sysctl(t.serverNs, ...loose);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(NO_SWEEP));
    // Replies from b1 and b2 leave by b0; with rp_filter off, requests still get in.
    await lab.ip(t.serverNs, 'route', 'add', '198.18.0.0/20', 'dev', 'b0', 'table', '500');
    await lab.ip(t.serverNs, 'rule', 'add', 'from', 'all', 'lookup', '500', 'pref', '100');
    await eventually(async () => expect(await replyPathOk(lab!, t.serverNs)).toEqual({ b0: 1, b1: 0, b2: 0 }));
    const metric = async (pattern: RegExp) => {
      const text = await lab!.exec(t.serverNs, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
      return [...text.matchAll(pattern)].reduce((sum, match) => sum + Number(match[1]), 0);
    };
    const rpFilterBreaks = () => metric(/^symroute_reply_path_failures_total\{reason="ingress_rp_filter"\} (\d+)$/gm);
    const passes = () => metric(/^symroute_reconciles_total\{[^}]*\} (\d+)$/gm);
    expect(await rpFilterBreaks()).toBe(0);
    const passesBefore = await passes();
    await lab.sysctl(t.serverNs, 'net.ipv4.conf.b2.rp_filter=1');
    await eventually(async () => expect(await rpFilterBreaks()).toBe(1));
    expect(daemon.records.filter((r) => r.level === 40).at(-1)).toMatchObject({ ifname: 'b2', reason: 'ingress_rp_filter' });
    // conf.all counts for every device: b1 too.
    await lab.sysctl(t.serverNs, 'net.ipv4.conf.all.rp_filter=1');
    await eventually(async () => expect(await rpFilterBreaks()).toBe(2));
    expect(await passes()).toBe(passesBefore);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });

  it('prints each path in words, and works with no daemon running', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    expect((await lab.runCli(t.serverNs, ['run', '--once', '--config', lab.writeConfig(NO_SWEEP)])).code).toBe(0);
    await lab.ip(t.serverNs, 'rule', 'add', 'from', t.serverAddresses[1]!, 'lookup', 'main', 'pref', '100');
    const text = await lab.runCli(t.serverNs, ['verify']);
    expect(text.code).toBe(1);
    expect(text.stdout.split('\n')).toEqual([
      'b0  ipv4  198.18.1.1  reply to 198.18.0.1: ok',
      'b0  ipv4  198.18.1.1  request from 198.18.0.1: ok',
      expect.stringMatching(
        /^b1 {2}ipv4 {2}198\.18\.1\.2 {2}reply to 198\.18\.0\.1: BROKEN egress_other_device: a reply from 198\.18\.1\.2 to 198\.18\.0\.1 would leave by b0, not b1 \(rule from 198\.18\.1\.2 lookup main pref 100, table 254\)$/,
      ),
      expect.stringMatching(/^b1 {2}ipv4 {2}198\.18\.1\.2 {2}request from 198\.18\.0\.1: BROKEN ingress_rp_filter: .* leads back through b0 \(E(XDEV|INVAL)\)$/),
      '2 of 4 reply paths hold',
      '',
    ]);
    // ARP that answers for every NIC's addresses joins the verdict: requests may come in elsewhere.
    await lab.ip(t.serverNs, 'rule', 'del', 'pref', '100');
    await lab.sysctl(t.serverNs, 'net.ipv4.conf.all.arp_ignore=0');
    const arp = await lab.runCli(t.serverNs, ['verify']);
    expect(arp.code).toBe(1);
    expect(arp.stdout).toContain('b1  ipv4  ARP: b1: arp_ignore is 0 on a NIC that shares its subnet with another, so requests for its addresses may arrive on another NIC');
    expect(arp.stdout).toContain('4 of 4 reply paths hold; 2 ARP settings let requests arrive on another NIC\n');
    const arpJson = JSON.parse((await lab.runCli(t.serverNs, ['verify', '--json'])).stdout) as VerifyJson;
    expect([arpJson.ok, arpJson.arp.map((f) => `${f.ifname} ${f.key} ${f.effective}`)]).toEqual([false, ['b0 arp_ignore 0', 'b1 arp_ignore 0']]);
    await lab.sysctl(t.serverNs, 'net.ipv4.conf.all.arp_ignore=1');
    await lab.ip(t.serverNs, 'rule', 'add', 'from', t.serverAddresses[1]!, 'lookup', 'main', 'pref', '100');

    const status = await lab.runCli(t.serverNs, ['status']);
    expect(status.stdout).toContain('  replies ipv4 leave through b0\n');
    expect(status.stdout).toContain('  replies ipv4 BROKEN:\n    egress_other_device: a reply from 198.18.1.2 to 198.18.0.1 would leave by b0, not b1');
  });
});
