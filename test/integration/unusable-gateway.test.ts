// A gateway the kernel must refuse in an interface's table — outside every prefix of the
// interface, not on-link, not link-local (IPv6), and not behind a device route of it in the
// main table — is a planning problem: no default route is planned for that table, the
// problem is logged once (a warning), shown by `status` and counted in
// symroute_unusable_gateways, and everything else converges. (It used to be sent to the
// kernel, refused with ENETUNREACH, and retried and logged as an error forever.)
// Addresses: 198.18.0.0/15, 203.0.113.0/24, 2001:db8::/32.
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, type DaemonProcess } from '../support/lab.js';

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

/** NICs n0 (198.18.1.10/24) and n1 (198.18.3.10/24), their veth peers excluded by name. */
async function host(l: Lab): Promise<{ ns: string; tables: [number, number] }> {
  const ns = await l.namespace('h');
  for (const [k, octet] of [[0, 1], [1, 3]] as const) {
    await l.veth(ns, `n${k}`, ns, `veth${k}`);
    await l.ip(ns, 'addr', 'add', `198.18.${octet}.10/24`, 'dev', `n${k}`);
  }
  return { ns, tables: [await l.tableOf(ns, 'n0'), await l.tableOf(ns, 'n1')] };
}

const warnings = (daemon: DaemonProcess) => daemon.records.filter((r) => r.level === 40).map((r) => r.msg);

async function unusableGauge(l: Lab, ns: string, family: 'ipv4' | 'ipv6'): Promise<number> {
  const text = await l.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
  return Number(text.match(new RegExp(`^symroute_unusable_gateways\\{family="${family}"\\} (\\S+)$`, 'm'))?.[1]);
}

interface StatusJson {
  problems: string[];
  interfaces: Array<{ name: string; families: Array<{ family: string; gateway: unknown; unusableGateway: unknown }> }>;
}

describe('a gateway the kernel must refuse', () => {
  it('learned from main, when the NIC loses its subnet but keeps another address: one warning, no error, the rest converged', async () => {
    lab = new Lab();
    const l = lab;
    const { ns, tables } = await host(lab);
    await lab.ip(ns, 'addr', 'add', '198.18.2.10/24', 'dev', 'n0');
    await lab.ip(ns, 'route', 'add', 'default', 'via', '198.18.2.1', 'dev', 'n0', 'metric', '100');
    await lab.ip(ns, 'route', 'add', 'default', 'via', '198.18.3.1', 'dev', 'n1', 'metric', '200');
    const config = lab.writeConfig('');
    const daemon = await lab.startConverged(ns, config);
    expect(await lab.tableLines(ns, tables[0])).toContain('default via 198.18.2.1 dev n0 proto 83');

    // The gateway's subnet goes; main keeps its default route via 198.18.2.1 (the kernel does).
    await lab.ip(ns, 'addr', 'del', '198.18.2.10/24', 'dev', 'n0');
    const problem =
      'n0: IPv4 gateway 198.18.2.1 (from main table) is not reachable through n0: in none of its prefixes ' +
      '(198.18.1.0/24), nor behind a device route of it in the main table, and not onlink; the kernel would ' +
      `refuse it, so table ${tables[0]} gets no IPv4 default route`;
    await eventually(async () =>
      expect(await l.tableLines(ns, tables[0])).toEqual(['198.18.1.0/24 dev n0 scope link src 198.18.1.10 proto 83']),
    );
    await lab.daemonCaughtUp(ns, '198.18.3.10', tables[1]);
    expect(await lab.tableLines(ns, tables[1])).toEqual([
      '198.18.3.0/24 dev n1 scope link src 198.18.3.10 proto 83',
      'default via 198.18.3.1 dev n1 proto 83',
    ]);
    expect(daemon.errors(), daemon.log()).toEqual([]);
    expect(warnings(daemon).filter((w) => !w.startsWith('repairing')), daemon.log()).toEqual([problem]);
    expect(await unusableGauge(lab, ns, 'ipv4')).toBe(1);
    expect(await unusableGauge(lab, ns, 'ipv6')).toBe(0);

    const status = await lab.runCli(ns, ['status', '--json', '--config', config]);
    expect(status.code).toBe(1); // a problem needs attention
    const json = JSON.parse(status.stdout) as StatusJson;
    expect(json.problems).toEqual([problem]);
    expect(json.interfaces.find((i) => i.name === 'n0')!.families).toEqual([
      {
        family: 'ipv4',
        addresses: ['198.18.1.10/24'],
        gateway: null,
        unusableGateway: { address: '198.18.2.1', source: 'main table' },
        replies: { ok: true, failures: [] },
      },
    ]);

    // Started in this state, it converges at once, with the one warning and no error.
    await daemon.stop();
    const next = await lab.startConverged(ns, config);
    await lab.daemonCaughtUp(ns, '198.18.3.10', tables[1]);
    expect(next.errors(), next.log()).toEqual([]);
    expect(warnings(next).filter((w) => !w.startsWith('repairing')), next.log()).toEqual([problem]);
    expect(await lab.tableLines(ns, tables[0])).toEqual(['198.18.1.0/24 dev n0 scope link src 198.18.1.10 proto 83']);

    // The subnet comes back: so does the default route, and the gauge goes to 0.
    await lab.ip(ns, 'addr', 'add', '198.18.2.10/24', 'dev', 'n0');
    await eventually(async () => expect(await l.tableLines(ns, tables[0])).toContain('default via 198.18.2.1 dev n0 proto 83'));
    await eventually(async () => expect(await unusableGauge(l, ns, 'ipv4')).toBe(0));
    expect(next.errors(), next.log()).toEqual([]);
  });

  it('configured outside the prefixes (IPv4 and IPv6): one warning each, no error; a device route in main makes it usable', async () => {
    lab = new Lab();
    const l = lab;
    const { ns, tables } = await host(lab);
    await lab.ip(ns, 'addr', 'add', '2001:db8:3::10/64', 'dev', 'n1', 'nodad');
    const config = lab.writeConfig('gateways:\n  n1:\n    ipv4: 203.0.113.1\n    ipv6: 2001:db8:99::1\n');
    const daemon = await lab.startConverged(ns, config);
    await lab.daemonCaughtUp(ns, '198.18.1.10', tables[0]);

    expect(daemon.errors(), daemon.log()).toEqual([]);
    expect(warnings(daemon).filter((w) => !w.startsWith('repairing')).sort(), daemon.log()).toEqual([
      'n1: IPv4 gateway 203.0.113.1 (from config) is not reachable through n1: in none of its prefixes (198.18.3.0/24), ' +
        `nor behind a device route of it in the main table, and not onlink; the kernel would refuse it, so table ${tables[1]} gets no IPv4 default route`,
      'n1: IPv6 gateway 2001:db8:99::1 (from config) is not reachable through n1: in none of its prefixes (2001:db8:3::/64), ' +
        `nor behind a device route of it in the main table, not link-local, and not onlink; the kernel would refuse it, so table ${tables[1]} gets no IPv6 default route`,
    ]);
    expect(await lab.tableLines(ns, tables[1])).toEqual(['198.18.3.0/24 dev n1 scope link src 198.18.3.10 proto 83']);
    expect((await lab.tableLines(ns, tables[1], 6)).filter((r) => r.startsWith('default'))).toEqual([]);
    expect(await lab.tableLines(ns, tables[0])).toEqual(['198.18.1.0/24 dev n0 scope link src 198.18.1.10 proto 83']);
    expect(await unusableGauge(lab, ns, 'ipv4')).toBe(1);
    expect(await unusableGauge(lab, ns, 'ipv6')).toBe(1);

    // The way admins reach a gateway outside the subnet without onlink: a device route to it.
    // The kernel then accepts the gateway, and so does the plan.
    await lab.ip(ns, 'route', 'add', '203.0.113.1', 'dev', 'n1');
    await lab.ip(ns, '-6', 'route', 'add', '2001:db8:99::1/128', 'dev', 'n1');
    await eventually(async () => expect(await l.tableLines(ns, tables[1])).toContain('default via 203.0.113.1 dev n1 proto 83'));
    await eventually(async () =>
      expect(await l.tableLines(ns, tables[1], 6)).toContain('default via 2001:db8:99::1 dev n1 proto 83'),
    );
    await eventually(async () => expect(await unusableGauge(l, ns, 'ipv6')).toBe(0));
    expect(await unusableGauge(lab, ns, 'ipv4')).toBe(0);
    expect(daemon.errors(), daemon.log()).toEqual([]);
  });
});
