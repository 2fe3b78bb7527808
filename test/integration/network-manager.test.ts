// symroute next to a real NetworkManager (Debian 12's network-manager 1.42, unpacked into the
// host machine's throwaway overlay, never installed), as the README's neighbour section
// describes it. The router machine of support/neighbours.ts serves DHCPv4 and RAs; the host's
// NetworkManager brings up e1..e3 with DHCP connections (keyfiles). symroute runs in the host's
// namespace; `ip -N -json`, real traffic from the client behind the router (strict rp_filter
// everywhere) and symroute's log and metrics are the judges.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, Lab, routeLine, type DaemonProcess } from '../support/lab.js';
import type { Machine } from '../support/machine.js';
import { bootMachines, buildNeighbours, caughtUp as caughtUpIn, CLIENT, metricSum, networkManagerRoot, NICS, routerFiles } from '../support/neighbours.js';

const NM_CONF = `[main]
plugins=keyfile
no-auto-default=*

[keyfile]
unmanaged-devices=interface-name:x1;interface-name:x2

[device-veths]
match-device=interface-name:e1,interface-name:e2,interface-name:e3
managed=1
`;

/** A DHCP connection for NIC e<k>: DHCPv4 (client id from the MAC: the router's static lease) and RAs. */
function connection(k: number): string {
  return `[connection]
id=e${k}
type=ethernet
interface-name=e${k}
autoconnect=true

[ethernet]

[ipv4]
method=auto
dhcp-client-id=mac
route-metric=${100 + k}

[ipv6]
method=auto
addr-gen-mode=eui64
route-metric=${100 + k}
`;
}

describe('next to NetworkManager (real, under systemd-nspawn)', () => {
  const lab = new Lab();
  let machines: Machine[] = [];
  let host: Machine;
  let hostNs: string;
  let clientNs: string;
  let daemon: DaemonProcess;
  const tables = new Map<number, number>();

  const nmcli = (...args: string[]) => host.check(['nmcli', ...args], 60_000);
  const metric = (name: string) => metricSum(lab, hostNs, name);
  const loud = () => daemon.records.filter((r) => r.level >= 40);
  const defaults = async (k: number, family: 4 | 6 = 4) =>
    (await lab.routes(hostNs, tables.get(k)!, family)).filter((r) => r.dst === 'default').map(routeLine);
  const leased = NICS.map((k) => `198.18.${k}.10`);

  /** Every NIC has its lease, and its table both gateways. */
  async function settled(): Promise<void> {
    try {
      await eventually(async () => {
        for (const k of NICS) {
          expect(await defaults(k)).toEqual([`default via 198.18.${k}.1 dev e${k} proto 83`]);
          expect(await defaults(k, 6)).toHaveLength(1);
          expect((await lab.ownedRules(hostNs)).map((r) => r.src)).toContain(`198.18.${k}.10`);
        }
      }, 45_000, 200);
    } catch (error) {
      // What NetworkManager did explains most failures here.
      const [devices, journal] = await Promise.all([host.exec(['nmcli', 'device']), host.exec(['journalctl', '--no-pager', '-u', 'NetworkManager', '-n', '150'])]);
      throw new Error(`${String(error)}\n${devices.stdout}\n${journal.stdout}`);
    }
  }

  const caughtUp = () => caughtUpIn(lab, hostNs);

  beforeAll(async () => {
    const nm = await networkManagerRoot();
    let routerNs: string;
    ({ routerNs, hostNs, clientNs } = await buildNeighbours(lab));
    machines = await bootMachines([
      { name: 'nm-router', netns: routerNs, etc: routerFiles() },
      {
        name: 'nm-host',
        netns: hostNs,
        extraRoot: nm,
        etc: {
          'NetworkManager/NetworkManager.conf': NM_CONF,
          ...Object.fromEntries(NICS.map((k) => [`NetworkManager/system-connections/e${k}.nmconnection`, connection(k)])),
        },
      },
    ]);
    const [router] = machines;
    host = machines[1]!;
    await router!.check(['systemctl', 'start', 'systemd-networkd'], 60_000);
    await host.check(['systemctl', 'start', 'NetworkManager'], 60_000);
    daemon = await lab.startConverged(hostNs, lab.writeConfig('metrics:\n  listen: 127.0.0.1:9477\n'));
    for (const k of NICS) tables.set(k, await lab.tableOf(hostNs, `e${k}`));
  }, 240_000);

  afterAll(async () => {
    await Promise.all(machines.map((m) => m.shutdown()));
    await lab.cleanup();
  }, 90_000);

  it("learns each NIC's gateway from the routes NetworkManager installs (DHCPv4 and RA), and replies stay symmetric", async () => {
    await settled();
    expect(await lab.reachable(clientNs, leased)).toEqual(leased);
    // The replies leave by the NIC's own table, through the NIC's own gateway.
    for (const k of NICS) expect((await lab.routeGet(hostNs, CLIENT, `198.18.${k}.10`)).dev).toBe(`e${k}`);
    expect(loud().map((r) => r.msg), daemon.log()).toEqual([]);
  });

  it("leaves symroute's rules alone when connections are brought up again: 0 drift repairs, no warning", async () => {
    await settled();
    for (const k of NICS) await nmcli('connection', 'up', `e${k}`);
    await settled();
    await caughtUp();
    expect(await metric('symroute_drift_repairs_total')).toBe(0);
    expect(await metric('symroute_conflicts_total')).toBe(0);
    expect(loud().map((r) => r.msg), daemon.log()).toEqual([]);
    expect(await lab.reachable(clientNs, leased)).toEqual(leased);
  });

  it("a connection with ipv4.route-table set to symroute's table: a collision, reported once; the table is symroute's again once given back", async () => {
    await settled();
    const seen = daemon.records.length;
    const table = tables.get(2)!;
    const owned = async (family: 4 | 6) => (await lab.ownedRules(hostNs, family)).filter((r) => r.table === String(table));
    await nmcli('connection', 'modify', 'e2', 'ipv4.route-table', String(table));
    await nmcli('connection', 'up', 'e2');
    // NetworkManager's routes for e2 go into the table (its prefix route proto kernel, its default proto dhcp).
    await eventually(async () => expect((await lab.routes(hostNs, table)).filter((r) => r.protocol !== '83').map((r) => r.dst).sort()).toEqual(['198.18.2.0/24', 'default']), 30_000, 200);
    await caughtUp();
    const warnings = daemon.records.slice(seen).filter((r) => r.level >= 40).map((r) => r.msg);
    expect(warnings, daemon.log()).toEqual([
      expect.stringMatching(new RegExp(`^e2: table ${table} holds a route symroute does not own \\(198\\.18\\.2\\.0/24 dev e2 table ${table} .*proto 2\\); leaving that table alone \\(pin a free one with table\\.pinned\\.e2: \\d+, or move every table with table\\.base: \\d+\\)$`)),
    ]);
    const status = await lab.runCli(hostNs, ['status']);
    expect(status.stdout).toContain(`e2 (ifindex ${table - 1000}): table ${table}, left alone (collision)`);
    // The whole table is left alone: e2's IPv6 rule into it goes too.
    expect(await owned(6)).toEqual([]);
    // NetworkManager 1.42 does not remove what symroute had in the table, not even on a reapply.
    const before = (await lab.routes(hostNs, table)).filter((r) => r.protocol === '83').map(routeLine);
    await nmcli('device', 'reapply', 'e2');
    await caughtUp();
    expect((await lab.routes(hostNs, table)).filter((r) => r.protocol === '83').map(routeLine)).toEqual(before);
    expect(daemon.records.slice(seen).filter((r) => r.level >= 40)).toHaveLength(1);
    expect(await metric('symroute_drift_repairs_total')).toBe(0);
    expect(await metric('symroute_conflicts_total')).toBe(0);
    // Given back (route-table 0), the table is symroute's again, both families.
    await nmcli('connection', 'modify', 'e2', 'ipv4.route-table', '0');
    await nmcli('connection', 'up', 'e2');
    await settled();
    await eventually(async () => expect(await owned(6)).toHaveLength(1), 30_000, 200);
    expect((await lab.routes(hostNs, table)).filter((r) => r.protocol !== '83')).toEqual([]);
    expect(await lab.reachable(clientNs, leased)).toEqual(leased);
  }, 120_000);
});
