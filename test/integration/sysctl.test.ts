// ARP settings of NICs that share a subnet (Case 2): reported by default, set with
// `sysctl: manage` — as root and as an unprivileged user holding only CAP_NET_ADMIN.
import { execFile } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO } from '../support/lab.js';
import { addSharedSubnetNic, buildSharedSubnet, type SharedSubnet } from '../support/topologies.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const ONLY_NET_ADMIN = [
  '--reuid=65534', '--regid=65534', '--clear-groups',
  '--inh-caps=-all,+net_admin', '--ambient-caps=-all,+net_admin', '--bounding-set=-all,+net_admin',
];

/** Case 2 with the host's ARP defaults (arp_ignore=0, arp_announce=0), as on a stock install. */
async function sharedSubnetWithArpDefaults(lab: Lab, count: number): Promise<SharedSubnet> {
  const t = await buildSharedSubnet(lab, count);
  await lab.sysctl(t.serverNs, 'net.ipv4.conf.all.arp_ignore=0', 'net.ipv4.conf.all.arp_announce=0');
  return t;
}

async function arpValues(lab: Lab, ns: string, nics: readonly string[]): Promise<string[]> {
  const keys = nics.flatMap((nic) => [`net.ipv4.conf.${nic}.arp_ignore`, `net.ipv4.conf.${nic}.arp_announce`]);
  return (await lab.exec(ns, 'sysctl', ...keys)).trim().split('\n');
}

const managedValues = (nics: readonly string[]) =>
  nics.flatMap((nic) => [`net.ipv4.conf.${nic}.arp_ignore = 1`, `net.ipv4.conf.${nic}.arp_announce = 2`]);
const defaultValues = (nics: readonly string[]) =>
  nics.flatMap((nic) => [`net.ipv4.conf.${nic}.arp_ignore = 0`, `net.ipv4.conf.${nic}.arp_announce = 0`]);

describe('ARP sysctls of NICs sharing a subnet', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('are reported once in the log, in status and as a metric, and left alone by default', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithArpDefaults(lab, 3);
    const daemon = await lab.startConverged(t.serverNs);

    const warnings = daemon.records.filter((r) => r.level === 40).map((r) => r.msg);
    expect(warnings).toHaveLength(6);
    expect(warnings).toContain(
      'b0: arp_ignore is 0 on a NIC that shares its subnet with another, so requests for its addresses may arrive ' +
        'on another NIC, where strict rp_filter drops them; set net.ipv4.conf.b0.arp_ignore=1 (or sysctl: manage)',
    );
    expect(warnings.filter((w) => w.includes('arp_announce is 0'))).toHaveLength(3);
    const metrics = await lab.exec(t.serverNs, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
    expect(metrics).toMatch(/^symroute_sysctl_problems 6$/m);
    expect(metrics).toMatch(/^symroute_sysctl_errors_total 0$/m);

    const status = await lab.runCli(t.serverNs, ['status', '--config', lab.writeConfig('metrics: {listen: false}\n', 'status.yaml')]);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain('problems:\n  b0: arp_ignore is 0');
    expect(await arpValues(lab, t.serverNs, t.nics)).toEqual(defaultValues(t.nics));

    // Once per change: another NIC's findings are logged, the earlier ones not again.
    await addSharedSubnetNic(lab, t, 'b3', '198.18.1.4');
    await eventually(() => expect(daemon.messages().filter((m) => m.startsWith('b3: '))).toHaveLength(2));
    expect(daemon.records.filter((r) => r.level === 40)).toHaveLength(8);
    expect(daemon.errors()).toEqual([]);
  });

  it('with sysctl: manage are set per NIC as root, also for a NIC added later, and every address answers', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithArpDefaults(lab, 3);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig('sysctl: manage\n'));
    expect(await arpValues(lab, t.serverNs, t.nics)).toEqual(managedValues(t.nics));
    expect(daemon.messages()).toContain('set net.ipv4.conf.b1.arp_ignore=1 (was 0)');

    await addSharedSubnetNic(lab, t, 'b3', '198.18.1.4');
    await eventually(async () => expect(await arpValues(lab, t.serverNs, ['b3'])).toEqual(managedValues(['b3'])));
    await eventually(async () => expect(await lab.ownedRules(t.serverNs)).toHaveLength(4));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
    expect(daemon.records.filter((r) => r.level >= 40)).toEqual([]);
  });

  it('with sysctl: manage are set by uid 65534 holding only CAP_NET_ADMIN', async () => {
    lab = new Lab();
    const t = await sharedSubnetWithArpDefaults(lab, 3);
    chmodSync(lab.dir, 0o755);
    const config = lab.writeConfig('sysctl: manage\nmetrics: {listen: false}\n');
    chmodSync(config, 0o644);
    const { stdout } = await run('ip', [
      'netns', 'exec', t.serverNs, 'setpriv', ...ONLY_NET_ADMIN, process.execPath, CLI, 'run', '--once', '--config', config,
    ], { env: { ...process.env, RUNTIME_DIRECTORY: lab.runtimeDirectoryFor(65534) } });
    expect(stdout).toContain('"msg":"set net.ipv4.conf.b2.arp_announce=2 (was 0)"');
    expect(stdout).not.toMatch(/"level":(40|50)/);
    expect(await arpValues(lab, t.serverNs, t.nics)).toEqual(managedValues(t.nics));
    expect(await lab.reachable(t.clientNs, t.serverAddresses)).toEqual(t.serverAddresses);
  });
});
