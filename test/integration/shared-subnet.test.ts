// Case 2 (many NICs in one subnet) end to end: 8 NICs in one /20, strict rp_filter and arp_ignore=1.
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab } from '../support/lab.js';
import { buildSharedSubnet } from '../support/topologies.js';

describe('Case 2: many NICs in one subnet', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('makes 8 of 8 addresses answer where only 1 did', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 8);

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toHaveLength(1);

    const daemon = lab.startDaemon(t.serverNs, ['--config', lab.writeConfig('')]);
    await eventually(async () => expect(await lab.ownedRules(t.serverNs)).toHaveLength(8));

    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    for (const [k, address] of t.serverAddresses.entries()) {
      const route = await lab.routeGet(t.serverNs, t.clientAddress, address);
      expect(route.dev).toBe(t.nics[k]);
    }
    // One table per NIC holding exactly the connected prefix with the NIC's own source.
    for (const [k, nic] of t.nics.entries()) {
      const rule = (await lab.ownedRules(t.serverNs)).find((r) => r.src === t.serverAddresses[k])!;
      expect(rule).toMatchObject({ priority: 30000, table: expect.any(String) });
      expect(await lab.routes(t.serverNs, rule.table)).toEqual([
        expect.objectContaining({ dst: '198.18.0.0/20', dev: nic, scope: 'link', prefsrc: t.serverAddresses[k] }),
      ]);
    }
    expect(daemon.messages()).toContainEqual(expect.stringMatching(/^converged in [\d.]+ ms \(8 rules, 8 routes\)$/));
  });

  it('converges with --once and exits 0, and a second --once changes nothing', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const config = lab.writeConfig('');
    const first = await lab.runCli(t.serverNs, ['run', '--once', '--config', config]);
    expect(first.code).toBe(0);
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(3);

    const second = await lab.runCli(t.serverNs, ['run', '--once', '--config', config]);
    expect(second.code).toBe(0);
    expect(second.stdout).not.toMatch(/"msg":"(added|deleted|replaced)/);
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(3);
  });

  it('with --once exits 1 when the kernel keeps refusing a change, after logging why', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    // A gateway the kernel refuses, every retry.
    await lab.refuseGateway(t.serverNs, 'b0', '203.0.113.99');
    const config = lab.writeConfig('gateways:\n  b0:\n    ipv4: 203.0.113.99\n');
    const result = await lab.runCli(t.serverNs, ['run', '--once', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('adding route default via 203.0.113.99 dev b0 table');
    expect(result.stdout).toMatch(/could not converge after 3 attempts/);
    // Everything else still got done.
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
  });
});
