// symroute next to a real systemd-networkd (252, the machine's own), as the README's neighbour
// section describes it: the router machine of support/neighbours.ts serves DHCPv4 and RAs,
// and the host machine's networkd takes its three NICs' addresses and gateways from them.
// symroute runs in the host's namespace; `ip -N -json`, real traffic from the client behind
// the router (strict rp_filter everywhere) and symroute's metrics are the judges.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, Lab, routeLine, type DaemonProcess } from '../support/lab.js';
import type { Machine } from '../support/machine.js';
import { bootMachines, buildNeighbours, caughtUp as caughtUpIn, LEASE_S, metricSum, NICS, RA_LIFETIME_S, routerFiles, routerNetwork } from '../support/neighbours.js';

/** The README's two settings. */
const README_SETTINGS = '[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=no\n';
const DROP_IN = '/etc/systemd/networkd.conf.d/symroute.conf';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The host's NIC: DHCPv4 and RAs, plus a static address that outlives the lease. */
function hostNetwork(k: number): string {
  return `[Match]
Name=e${k}

[Network]
DHCP=ipv4
IPv6AcceptRA=yes
LinkLocalAddressing=ipv6
Address=198.18.${k}.200/24

[DHCPv4]
ClientIdentifier=mac
RouteMetric=${100 + k}
UseDNS=no
UseNTP=no
UseHostname=no

[IPv6AcceptRA]
RouteMetric=${100 + k}
UseDNS=no
`;
}

const gatewayLine = (k: number, gateway = `198.18.${k}.1`) => `default via ${gateway} dev e${k} proto 83`;

describe('next to systemd-networkd (real, under systemd-nspawn)', () => {
  const lab = new Lab();
  let router: Machine | undefined;
  let host: Machine | undefined;
  let hostNs: string;
  let clientNs: string;
  let daemon: DaemonProcess;
  let config: string;
  const tables = new Map<number, number>();

  const networkctl = (m: Machine, ...args: string[]) => m.check(['networkctl', ...args], 60_000);
  const metric = (name: string) => metricSum(lab, hostNs, name);
  const caughtUp = () => caughtUpIn(lab, hostNs);
  const loud = () => daemon.records.filter((r) => r.level >= 40).map((r) => r.msg);
  const defaults = async (k: number, family: 4 | 6 = 4) =>
    (await lab.routes(hostNs, tables.get(k)!, family)).filter((r) => r.dst === 'default').map(routeLine);
  const leased = async (k: number) => (await lab.ipJson<Array<{ addr_info: Array<{ local: string; dynamic?: boolean }> }>>(hostNs, '-4', 'addr', 'show', 'dev', `e${k}`))[0]!.addr_info.some((a) => a.local === `198.18.${k}.10`);
  const withNetworkdSettings = async (settings: string | undefined) => {
    await host!.check(['sh', '-c', settings === undefined ? `rm -f ${DROP_IN}` : `mkdir -p ${DROP_IN.replace(/\/[^/]*$/, '')} && printf '${settings.replace(/\n/g, '\\n')}' > ${DROP_IN}`]);
    await host!.check(['systemctl', 'restart', 'systemd-networkd'], 60_000);
  };

  beforeAll(async () => {
    let routerNs: string;
    ({ routerNs, hostNs, clientNs } = await buildNeighbours(lab));
    // The host starts with the README's settings.
    [router, host] = await bootMachines([
      { name: 'nd-router', netns: routerNs, etc: routerFiles() },
      {
        name: 'nd-host',
        netns: hostNs,
        etc: { ...Object.fromEntries(NICS.map((k) => [`systemd/network/10-e${k}.network`, hostNetwork(k)])), [DROP_IN.replace('/etc/', '')]: README_SETTINGS },
      },
    ]);
    await Promise.all([router!, host!].map((m) => m.check(['systemctl', 'start', 'systemd-networkd'], 60_000)));
    config = lab.writeConfig('metrics:\n  listen: 127.0.0.1:9477\n');
    daemon = await lab.startConverged(hostNs, config);
    for (const k of NICS) tables.set(k, await lab.tableOf(hostNs, `e${k}`));
  }, 180_000);

  afterAll(async () => {
    await Promise.all([router?.shutdown(), host?.shutdown()]);
    await lab.cleanup();
  }, 90_000);

  it("learns each NIC's gateway from the routes networkd installs (DHCPv4 and RA), and replies stay symmetric", async () => {
    await eventually(async () => {
      for (const k of NICS) {
        expect(await defaults(k)).toEqual([gatewayLine(k)]);
        expect((await defaults(k, 6)).map((line) => line.replace(/via fe80::\S+/, 'via fe80::…'))).toEqual([`default via fe80::… dev e${k} proto 83`]);
      }
    }, 60_000, 200);
    const leasedAddresses = NICS.map((k) => `198.18.${k}.10`);
    const staticAddresses = NICS.map((k) => `198.18.${k}.200`);
    const all = [...leasedAddresses, ...staticAddresses];
    expect(await lab.reachable(clientNs, all)).toEqual(all);
    expect(loud(), daemon.log()).toEqual([]);
  });

  it('follows a DHCP renewal that changes the gateway', async () => {
    await router!.check(['sh', '-c', `cat > /etc/systemd/network/10-r2.network <<'EOF'\n${routerNetwork(2, '198.18.2.254')}EOF`]);
    await networkctl(router!, 'reload');
    await networkctl(router!, 'reconfigure', 'r2');
    // The host's networkd learns it at its next renewal (every LEASE_S / 2 s).
    await eventually(async () => expect(await defaults(2)).toEqual([gatewayLine(2, '198.18.2.254')]), 30_000, 100);
    expect((await lab.routeGet(hostNs, '198.51.100.10', '198.18.2.10')).gateway).toBe('198.18.2.254');
    expect(await lab.reachable(clientNs, ['198.18.2.10'])).toEqual(['198.18.2.10']);
    expect(loud(), daemon.log()).toEqual([]);
  });

  it('under DHCP renewals every few seconds: no rule or route ever missing when sampled, no warning', async () => {
    const expectedRules = NICS.flatMap((k) => [`198.18.${k}.10 ${tables.get(k)}`, `198.18.${k}.200 ${tables.get(k)}`]).sort();
    const expectedRoutes = NICS.flatMap((k) => [`198.18.${k}.0/24 dev e${k}`, `default dev e${k}`]).sort();
    const lifetimes = new Map<number, number>();
    const renewals = new Map<number, number>(NICS.map((k) => [k, 0]));
    const until = Date.now() + 4 * LEASE_S * 1000;
    let samples = 0;
    while (Date.now() < until) {
      const [rules, routes, addresses] = await Promise.all([
        lab.ownedRules(hostNs),
        lab.ipJsonNumeric<{ dst: string; dev: string; table: string; protocol: string }>(hostNs, '-4', 'route', 'show', 'table', 'all', 'proto', '83'),
        lab.ipJson<Array<{ ifname: string; addr_info: Array<{ local: string; valid_life_time: number }> }>>(hostNs, '-4', 'addr', 'show'),
      ]);
      expect(rules.map((r) => `${r.src} ${r.table}`).sort()).toEqual(expectedRules);
      expect(routes.map((r) => `${r.dst} dev ${r.dev}`).sort()).toEqual(expectedRoutes);
      for (const k of NICS) {
        const lease = addresses.find((a) => a.ifname === `e${k}`)?.addr_info.find((a) => a.local === `198.18.${k}.10`);
        expect(lease, `e${k} lost its lease`).toBeDefined();
        if (lease!.valid_life_time > (lifetimes.get(k) ?? Infinity)) renewals.set(k, renewals.get(k)! + 1);
        lifetimes.set(k, lease!.valid_life_time);
      }
      samples++;
    }
    // Each NIC renewed several times while sampled (a renewal resets the lease's lifetime).
    for (const k of NICS) expect(renewals.get(k), `renewals of e${k}`).toBeGreaterThanOrEqual(4);
    expect(samples).toBeGreaterThan(20);
    expect(loud(), daemon.log()).toEqual([]);
    expect(await metric('symroute_drift_repairs_total')).toBe(0);
  }, 60_000);

  it("with the README's settings, a storm of networkctl reconfigure: 0 drift repairs, 0 conflicts, no warning or error", async () => {
    await settleAfterStorm();
    // Back to back, then spaced (each one carried out whole: its addresses off and back).
    for (let i = 0; i < 15; i++) await networkctl(host!, 'reconfigure', ...NICS.map((k) => `e${k}`));
    for (let i = 0; i < 15; i++) {
      await networkctl(host!, 'reconfigure', ...NICS.map((k) => `e${k}`));
      await sleep(300);
    }
    // networkd 252's DHCP client can come out of such a storm no longer renewing: the lease
    // runs out and is taken anew, again and again. symroute follows that too; what counts
    // here is that it agrees with the kernel once the storm is over, without a word.
    await eventually(async () => {
      const plan = await lab.runCli(hostNs, ['plan', '--config', config]);
      expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    }, 30_000, 200);
    await caughtUp();
    expect(loud(), daemon.log()).toEqual([]);
    expect(await metric('symroute_drift_repairs_total')).toBe(0);
    expect(await metric('symroute_conflicts_total')).toBe(0);
    expect(daemon.messages().filter((m) => m.startsWith('dumping kernel state again'))).toEqual([]);
    // A restart puts networkd's DHCP client right for what follows.
    await withNetworkdSettings(README_SETTINGS);
    await settleAfterStorm();
  }, 180_000);

  it("with networkd's defaults, reconfigure removes symroute's rules: it detects the fight, backs off and warns once, naming the two settings", async () => {
    await withNetworkdSettings(undefined);
    await settleAfterStorm();
    const seen = daemon.records.length;
    // One NIC reconfigured again and again, each time once networkd is done with it.
    for (let i = 0; i < 12; i++) {
      await networkctl(host!, 'reconfigure', 'e1');
      await sleep(600);
    }
    expect(await metric('symroute_conflicts')).toBeGreaterThan(0);
    const warnings = daemon.records.slice(seen).filter((r) => r.level >= 40);
    const conflicts = warnings.filter((r) => /keeps being removed/.test(r.msg));
    // Once for the fight, naming the settings; the other objects it takes are logged at info.
    expect(conflicts, daemon.log()).toHaveLength(1);
    expect(conflicts[0]!.msg).toMatch(/ManageForeignRoutingPolicyRules=no and ManageForeignRoutes=no/);
    expect(daemon.records.slice(seen).filter((r) => r.level === 30 && /keeps being removed .* like the others in this conflict$/.test(r.msg)).length).toBeGreaterThan(0);
    // The drift repairs before the fight was recognised: one warning, the rest at info.
    expect(warnings.filter((r) => r.msg.startsWith('repairing ')), daemon.log()).toHaveLength(1);
    // The fight over, symroute puts everything back.
    await settleAfterStorm();
    // Back to the README's settings for what follows.
    await withNetworkdSettings(README_SETTINGS);
    await settleAfterStorm();
  }, 180_000);

  it('drops the gateway from the NIC table when the DHCP lease expires and the RA lifetime runs out', async () => {
    await settleAfterStorm();
    const warnedBefore = loud().length;
    // The router falls silent: no renewal answered, no router advertisement sent.
    await router!.check(['systemctl', 'kill', '--kill-who=main', '--signal=SIGSTOP', 'systemd-networkd']);
    try {
      await eventually(async () => {
        for (const k of NICS) {
          expect(await leased(k)).toBe(false);
          expect(await defaults(k)).toEqual([]);
          expect(await defaults(k, 6)).toEqual([]);
        }
      }, (LEASE_S + RA_LIFETIME_S) * 1000 + 30_000, 200);
      // The static address keeps its rule and connected route, the SLAAC one too.
      for (const k of NICS) {
        expect(await lab.tableLines(hostNs, tables.get(k)!)).toEqual([`198.18.${k}.0/24 dev e${k} scope link src 198.18.${k}.200 proto 83`]);
        expect((await lab.tableLines(hostNs, tables.get(k)!, 6)).filter((line) => line.startsWith('2001:db8:'))).toHaveLength(1);
      }
      expect(loud().slice(warnedBefore), daemon.log()).toEqual([]);
    } finally {
      await router!.check(['systemctl', 'kill', '--kill-who=main', '--signal=SIGCONT', 'systemd-networkd']);
    }
  }, 90_000);

  /** Waits until networkd has put every lease back and symroute has caught up with it. */
  async function settleAfterStorm(): Promise<void> {
    try {
      await networkdSettled();
    } catch (error) {
      // What networkd did explains most failures here.
      const journals = await Promise.all([host!, router!].map((m) => m.exec(['journalctl', '--no-pager', '-u', 'systemd-networkd', '-n', '200'])));
      throw new Error(`${String(error)}\nhost's networkd:\n${journals[0]!.stdout}\nrouter's networkd:\n${journals[1]!.stdout}`);
    }
    await caughtUp();
  }

  async function networkdSettled(): Promise<void> {
    await eventually(async () => {
      for (const k of NICS) {
        expect(await leased(k)).toBe(true);
        expect(await defaults(k)).toHaveLength(1);
        expect(await defaults(k, 6)).toHaveLength(1);
      }
      expect(await lab.ownedRules(hostNs)).toHaveLength(2 * NICS.length);
    }, 90_000, 200);
  }
});
