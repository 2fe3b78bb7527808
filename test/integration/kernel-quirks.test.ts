// Kernel behaviour that is easy to get wrong in a mirror: changes the kernel makes without
// announcing them, messages of other families on the same channels, and events that race
// with a dump. Each case freezes the daemon (SIGSTOP) where timing matters, so the race is
// forced rather than hoped for.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO, type DaemonProcess } from '../support/lab.js';

const FLOOD_ROUTES = 30_000;

async function host(lab: Lab): Promise<{ ns: string; daemon: DaemonProcess; table: number }> {
  const ns = await lab.namespace('h');
  const peer = await lab.namespace('p');
  await lab.veth(ns, 'e1', peer, 'f1');
  await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
  const daemon = lab.startDaemon(ns, ['--config', lab.writeConfig('metrics:\n  listen: false\n')]);
  await eventually(async () => expect(await lab.ownedRules(ns)).toHaveLength(1));
  const [rule] = await lab.ownedRules(ns);
  return { ns, daemon, table: Number(rule!.table) };
}

/** Runs `change` while the daemon cannot read its sockets. */
async function whileFrozen(daemon: DaemonProcess, change: () => Promise<void>): Promise<void> {
  process.kill(daemon.child.pid!, 'SIGSTOP');
  try {
    await change();
  } finally {
    process.kill(daemon.child.pid!, 'SIGCONT');
  }
}


async function inSync(lab: Lab, ns: string): Promise<void> {
  const plan = await lab.runCli(ns, ['plan', '--config', lab.writeConfig('', 'plan.yaml')]);
  expect(plan.code, plan.stdout).toBe(0);
}

describe('kernel quirks', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it("an address removed and re-added before the daemon looks: the kernel's silent flush is repaired", async () => {
    lab = new Lab();
    const { ns, daemon, table } = await host(lab);
    const before = await lab.tableLines(ns, table);
    await whileFrozen(daemon, async () => {
      // Its last IPv4 address gone, the device loses every IPv4 route, unannounced.
      await lab.ip(ns, 'addr', 'del', '198.18.1.10/24', 'dev', 'e1');
      await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
    });
    await eventually(async () => expect(await lab.tableLines(ns, table)).toEqual(before));
    await inSync(lab, ns);
  });

  it('a rule deleted and re-created while notifications overflow ends present, not deleted', async () => {
    lab = new Lab();
    const { ns, daemon } = await host(lab);
    const batch = join(lab.dir, 'flood.batch');
    writeFileSync(
      batch,
      `${Array.from({ length: FLOOD_ROUTES }, (_, i) => `route add 203.0.${(i >> 8) & 255}.${i & 255}/32 dev e1 table 77`).join('\n')}\n`,
    );
    await whileFrozen(daemon, async () => {
      // The delete is queued; the re-add is lost in the overrun. Replaying the delete over
      // the fresh dump would remove a rule that exists.
      await lab.ip(ns, 'addr', 'del', '198.18.1.10/24', 'dev', 'e1');
      await lab.ip(ns, '-batch', batch);
      await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
    });
    await eventually(async () => {
      expect(daemon.messages()).toContain('dumping kernel state again (enobufs)');
      expect(await lab.ownedRules(ns)).toHaveLength(1);
    });
    await inSync(lab, ns);
  });

  it('a NIC enslaved to a bridge and released keeps its rule (bridge-port messages are not links)', async () => {
    lab = new Lab();
    const { ns, daemon } = await host(lab);
    await lab.bridge(ns, 'br0');
    await lab.ip(ns, 'link', 'set', 'e1', 'master', 'br0');
    await lab.ip(ns, 'link', 'set', 'e1', 'nomaster');
    await lab.ip(ns, 'link', 'set', 'e1', 'up');
    await eventually(async () => {
      expect(await lab.ownedRules(ns)).toHaveLength(1);
      await inSync(lab, ns);
    });
    expect(daemon.messages().filter((m) => m.startsWith('deleted rule'))).toEqual([]);
  });

  it('an IPv6 default route that gains and loses a second nexthop leaves no stale gateway behind', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.veth(ns, 'e1', peer, 'f1');
    await lab.veth(ns, 'e2', peer, 'f2');
    await lab.ip(ns, '-6', 'addr', 'add', '2001:db8:1::10/64', 'dev', 'e1', 'nodad');
    await lab.ip(ns, '-6', 'addr', 'add', '2001:db8:2::10/64', 'dev', 'e2', 'nodad');
    await lab.ip(ns, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'e1');
    lab.startDaemon(ns, ['--config', lab.writeConfig('metrics:\n  listen: false\n')]);
    const gateways = async () =>
      (await lab.ipJsonNumeric<{ table: string; dst: string; gateway?: string; protocol?: string }>(ns, '-6', 'route', 'show', 'table', 'all'))
        .filter((r) => r.protocol === '83' && r.dst === 'default')
        .map((r) => r.gateway)
        .sort();
    await eventually(async () => expect(await gateways()).toEqual(['fe80::1']));
    await lab.ip(ns, '-6', 'route', 'append', 'default', 'via', 'fe80::2', 'dev', 'e2');
    await eventually(async () => expect(await gateways()).toEqual(['fe80::1', 'fe80::2']));
    await lab.ip(ns, '-6', 'route', 'del', 'default');
    await lab.ip(ns, '-6', 'route', 'del', 'default').catch(() => undefined); // the second nexthop, if separate
    await eventually(async () => expect(await gateways()).toEqual([]));
    await inSync(lab, ns);
  });

  it('a notification forged by a local process is not believed (only the kernel is)', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.veth(ns, 'e1', peer, 'f1');
    await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
    const daemon = await lab.startConverged(ns);
    const table = await lab.tableOf(ns, 'e1');
    const ifindex = table - 1000;
    // Groups 1, 5, 7, 8, 9, 11, 19 (links, addresses, routes, rules) and 24 (IPv4 netconf):
    // bits 0,4,6,7,8,10,18,23.
    await lab.exec(ns, 'python3', join(REPO, 'test/support/forge-netlink.py'), '008405d1', String(ifindex), 'e1');
    await lab.daemonCaughtUp(ns, '198.18.1.10', table);
    expect(await lab.ownedRules(ns)).toHaveLength(1);
    expect(daemon.messages().filter((m) => m.startsWith('deleted'))).toEqual([]);
    const metrics = await lab.exec(ns, 'curl', '-s', 'http://127.0.0.1:9477/metrics');
    expect(metrics).toMatch(/^symroute_netlink_discarded_messages_total [1-9]/m);
    expect(daemon.records.find((r) => r.msg === 'discarded a netlink message')).toMatchObject({
      reason: 'notification not from the kernel',
    });
  });

  it("a gateway and then the address taken back to back (a DHCP client's release): the kernel's flush overtaking symroute's delete is followed silently", async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.veth(ns, 'e1', peer, 'f1');
    await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
    const gateway = 'default via 198.18.1.1 dev e1 proto dhcp metric 1024';
    await lab.ip(ns, 'route', 'add', ...gateway.split(' '));
    const daemon = await lab.startConverged(ns, lab.writeConfig('metrics:\n  listen: false\n'));
    const table = await lab.tableOf(ns, 'e1');
    const before = await lab.tableLines(ns, table);
    expect(before).toContain('default via 198.18.1.1 dev e1 proto 83');
    // symroute reads of the gateway's removal and deletes its copy; if the address goes while
    // that delete is on its way, the kernel has flushed the copy already (ESRCH). The window is
    // about as long as one pass takes: swept with a growing gap between the two (idle `ip rule`
    // reads in one `ip -batch`) until the race is hit.
    const overtaken = () => daemon.records.filter((r) => r.errno === 'ESRCH').length;
    for (let gap = 0; gap < 200 && overtaken() === 0; gap++) {
      const batch = join(lab.dir, 'release.batch');
      const filler = Array.from({ length: 100 + (gap % 50) * 4 }, () => 'rule show pref 7');
      writeFileSync(batch, [`route del ${gateway}`, ...filler, 'addr del 198.18.1.10/24 dev e1'].join('\n') + '\n');
      await lab.ip(ns, '-batch', batch);
      await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'e1');
      await lab.ip(ns, 'route', 'add', ...gateway.split(' '));
      await eventually(async () => expect(await lab.tableLines(ns, table)).toEqual(before));
    }
    expect(overtaken(), 'the race was never hit').toBeGreaterThan(0);
    await lab.daemonCaughtUp(ns, '198.18.1.10', table);
    // The one warning: the repair of the rule daemonCaughtUp deleted.
    expect(daemon.records.filter((r) => r.level >= 40).map((r) => r.msg), daemon.log()).toEqual(['repairing 1 rules/routes changed by someone else']);
    expect(daemon.messages().filter((m) => m.startsWith('dumping kernel state again'))).toEqual([]);
    await inSync(lab, ns);
  }, 120_000);
});
