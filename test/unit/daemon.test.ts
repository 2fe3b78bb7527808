// The daemon against a scripted kernel (no root): passes run one at a time and coalesce,
// undisturbed operation writes nothing twice and never re-dumps, a lost notification is
// a re-dump, and drift is only what someone else did.
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { PROTO_DHCP, route, rule } from '../support/builders.js';
import { metricTotal, settle, startScriptedDaemon, stopScriptedDaemons, type ScriptedDaemon } from '../support/scripted-daemon.js';
import { ScriptedKernel } from '../support/scripted-kernel.js';

const PROTO = 83;

afterEach(stopScriptedDaemons);

async function harness(setup: (kernel: ScriptedKernel) => void, config: Config = defaultConfig()): Promise<ScriptedDaemon> {
  const kernel = new ScriptedKernel();
  setup(kernel);
  return startScriptedDaemon(kernel, config);
}

const warnings = (h: ScriptedDaemon) => h.lines.filter((l) => l.level >= 40).map((l) => l.msg);
const nics = (kernel: ScriptedKernel, n: number) => {
  for (let i = 0; i < n; i++) {
    kernel.link(2 + i, `eth${i}`);
    kernel.address({ ifindex: 2 + i, cidr: `198.18.${i}.10/24` });
  }
};

describe('daemon against a scripted kernel', () => {
  it('converges at start with one dump of each kind and no error', async () => {
    const h = await harness((k) => nics(k, 3));
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(3);
    expect(h.kernel.ownedRoutes(PROTO)).toHaveLength(3);
    expect(h.kernel.errors()).toEqual([]);
    expect(['link', 'address', 'route', 'rule'].map((kind) => h.kernel.count(`dump_${kind}`))).toEqual([1, 1, 1, 1]);
    expect(h.daemon.inSync).toBe(true);
    expect(warnings(h)).toEqual([]);
  });

  it('handles a burst of addresses arriving while passes run: one pass at a time, no request answered with an error, no re-dump', async () => {
    const h = await harness((k) => nics(k, 4));
    // Events arrive while a pass is in flight and while its notifications are still queued.
    for (let round = 0; round < 20; round++) {
      h.kernel.address({ ifindex: 2 + (round % 4), cidr: `198.19.${round}.10/24` });
      if (round % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await settle(h);
    expect(h.kernel.errors()).toEqual([]);
    expect(h.kernel.count('dump_route')).toBe(1);
    expect(await metricTotal(h.metrics.resyncs)).toBe(0);
    // 24 `from` rules, and (24 being enough) the rules that let other sources skip them.
    expect(h.kernel.ownedRules(PROTO).filter((r) => r.priority === 30000)).toHaveLength(24);
    expect(h.kernel.ownedRoutes(PROTO)).toHaveLength(24);
    expect(warnings(h)).toEqual([]);
    expect(h.daemon.inSync).toBe(true);
  });

  it('re-dumps once after a receive overrun, and converges on what the kernel holds', async () => {
    const h = await harness((k) => nics(k, 2));
    h.kernel.notifications.held = true;
    h.kernel.address({ ifindex: 2, cidr: '198.19.0.10/24' });
    h.kernel.notifications.overrun();
    h.kernel.notifications.release();
    await settle(h);
    expect(await metricTotal(h.metrics.resyncs, { reason: 'enobufs' })).toBe(1);
    expect(h.kernel.count('dump_route')).toBe(2);
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(3);
    expect(h.kernel.errors()).toEqual([]);
  });

  it('counts `ip rule del` of its rule as one drift repair, once', async () => {
    const h = await harness((k) => nics(k, 2));
    h.kernel.delRule(rule({ from: '198.18.0.10', table: 1002 }));
    await settle(h);
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(2);
    expect(await metricTotal(h.metrics.driftRepairs)).toBe(1);
    expect(await metricTotal(h.metrics.driftRepairs, { kind: 'rule' })).toBe(1);
    expect(h.kernel.errors()).toEqual([]);
  });

  it('does not count an address removed and re-added as drift, however the passes fall', async () => {
    const h = await harness((k) => nics(k, 2));
    const address = { ifindex: 2, cidr: '198.18.0.10/24' };
    // Within one pass: the kernel silently drops the device's IPv4 routes, the rule stays.
    h.kernel.delAddress(address);
    h.kernel.address(address);
    await settle(h);
    // Across passes: symroute deletes the rule itself, then puts everything back.
    h.kernel.delAddress(address);
    await settle(h);
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(1);
    h.kernel.address(address);
    await settle(h);
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(2);
    expect(h.kernel.ownedRoutes(PROTO)).toHaveLength(2);
    expect(await metricTotal(h.metrics.driftRepairs)).toBe(0);
    expect(await metricTotal(h.metrics.reconciles, { trigger: 'drift' })).toBe(0);
    expect(h.kernel.errors()).toEqual([]);
    expect(warnings(h)).toEqual([]);
  });

  it('follows an address removal that overtakes its delete of the gateway route silently (ESRCH answered, no re-dump)', async () => {
    const address = { ifindex: 2, cidr: '198.18.0.10/24' };
    const gateway = route({ dst: '0.0.0.0/0', gateway: '198.18.0.1', oif: 2, protocol: PROTO_DHCP, metric: 1024 });
    const h = await harness((k) => {
      nics(k, 2);
      k.addRoute(gateway);
    });
    expect(h.kernel.ownedRoutes(PROTO).filter((r) => r.gateway)).toHaveLength(1);
    // A DHCP client (networkd reconfiguring) takes the gateway, then the address, back to back:
    // symroute's delete of its table's default route meets a kernel that already dropped it.
    h.kernel.beforeNextWrite(() => h.kernel.delAddress(address));
    h.kernel.delRoute(gateway);
    await settle(h);
    expect(h.kernel.errors()).toEqual(['delete_route ESRCH']);
    h.kernel.address(address);
    h.kernel.addRoute(gateway);
    await settle(h);
    expect(h.kernel.ownedRules(PROTO)).toHaveLength(2);
    expect(h.kernel.ownedRoutes(PROTO)).toHaveLength(3);
    expect(warnings(h)).toEqual([]);
    expect(await metricTotal(h.metrics.resyncs, { reason: 'stale_mirror' })).toBe(0);
    expect(await metricTotal(h.metrics.driftRepairs)).toBe(0);
  });
});
