// Throwaway network labs made of namespaces, veth pairs and bridges, built with iproute2.
// Used by `symroute demo` and by the integration tests — never by the daemon, which runs
// no programs at all.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
// Compiled, so that tests running this file from src/ find it too (src/ and dist/ are siblings).
const PROBE = new URL('../../dist/lab/probe.js', import.meta.url).pathname;
let labCounter = 0;

export class NetnsLab {
  protected readonly id: string;
  private readonly namespaces: string[] = [];

  constructor(prefix: string) {
    this.id = `${prefix}${process.pid % 100000}x${++labCounter}`;
  }

  /** Creates a namespace (loopback up); the returned name is unique to this lab. */
  async namespace(shortName: string): Promise<string> {
    const name = `${this.id}${shortName}`;
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.ip(name, 'link', 'set', 'lo', 'up');
    return name;
  }

  async ip(ns: string, ...args: string[]): Promise<string> {
    const { stdout } = await run('ip', ['-n', ns, ...args]);
    return stdout;
  }

  async exec(ns: string, ...command: string[]): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', ns, ...command]);
    return stdout;
  }

  async sysctl(ns: string, ...settings: string[]): Promise<void> {
    await this.exec(ns, 'sysctl', '-qw', ...settings);
  }

  /** A veth pair with one end in each namespace, both ends up. */
  async veth(nsA: string, nameA: string, nsB: string, nameB: string): Promise<void> {
    await this.ip(nsA, 'link', 'add', nameA, 'type', 'veth', 'peer', 'name', nameB, 'netns', nsB);
    await this.ip(nsA, 'link', 'set', nameA, 'up');
    await this.ip(nsB, 'link', 'set', nameB, 'up');
  }

  async bridge(ns: string, name: string): Promise<void> {
    await this.ip(ns, 'link', 'add', name, 'type', 'bridge');
    await this.ip(ns, 'link', 'set', name, 'up');
  }

  /** A veth from `hostNs` into bridge `bridgeName` in `switchNs`. */
  async plugIntoBridge(switchNs: string, bridgeName: string, port: string, hostNs: string, nic: string): Promise<void> {
    await this.veth(switchNs, port, hostNs, nic);
    await this.ip(switchNs, 'link', 'set', port, 'master', bridgeName);
  }

  /** Which of `addresses` answer from `ns` (TCP: connected or refused), optionally from a bound `source`. */
  async probe(ns: string, addresses: readonly string[], timeoutMs = 3000, source?: string): Promise<Record<string, boolean>> {
    // Forget failed neighbour entries so an earlier probe cannot taint this one.
    await this.ip(ns, 'neigh', 'flush', 'all').catch(() => undefined);
    const from = source === undefined ? [] : ['--from', source];
    const out = await this.exec(ns, process.execPath, PROBE, String(timeoutMs), ...from, ...addresses);
    return JSON.parse(out) as Record<string, boolean>;
  }

  async reachable(ns: string, addresses: readonly string[], timeoutMs?: number, source?: string): Promise<string[]> {
    const results = await this.probe(ns, addresses, timeoutMs, source);
    return addresses.filter((a) => results[a]);
  }

  /** Deletes every namespace this lab made (and with them their links). */
  async removeNamespaces(): Promise<void> {
    for (const ns of this.namespaces.splice(0).reverse()) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}

export interface SharedSubnet {
  switchNs: string;
  clientNs: string; // host A
  serverNs: string; // host B, the multi-NIC server
  clientAddress: string;
  nics: string[]; // b0..b{n-1}
  serverAddresses: string[]; // serverAddresses[k] lives on nics[k]
}

/**
 * Case 2 (README, "the RoCE/GPU server"): host B has `count` NICs in one /20 behind a bridge, with strict
 * rp_filter and arp_ignore=1, so without symroute host A reaches only one of B's addresses.
 * Addresses come from the benchmark range 198.18.0.0/15 only.
 */
export async function buildSharedSubnet(lab: NetnsLab, count = 8): Promise<SharedSubnet> {
  const switchNs = await lab.namespace('sw');
  const clientNs = await lab.namespace('a');
  const serverNs = await lab.namespace('b');
  await lab.bridge(switchNs, 'br0');
  await lab.sysctl(
    serverNs,
    'net.ipv4.conf.all.rp_filter=1',
    'net.ipv4.conf.default.rp_filter=1',
    'net.ipv4.conf.all.arp_ignore=1',
    'net.ipv4.conf.all.arp_announce=2',
  );
  await lab.plugIntoBridge(switchNs, 'br0', 'pa', clientNs, 'a0');
  const clientAddress = '198.18.0.100';
  await lab.ip(clientNs, 'addr', 'add', `${clientAddress}/20`, 'dev', 'a0');
  const topology: SharedSubnet = { switchNs, clientNs, serverNs, clientAddress, nics: [], serverAddresses: [] };
  for (let k = 0; k < count; k++) await addSharedSubnetNic(lab, topology, `b${k}`, `198.18.1.${k + 1}`);
  return topology;
}

/** One more NIC for host B on the shared /20 (strict rp_filter on it, like the others). */
export async function addSharedSubnetNic(lab: NetnsLab, topology: SharedSubnet, nic: string, address: string): Promise<void> {
  await lab.plugIntoBridge(topology.switchNs, 'br0', `p${nic}`, topology.serverNs, nic);
  await lab.sysctl(topology.serverNs, `net.ipv4.conf.${nic}.rp_filter=1`);
  await lab.ip(topology.serverNs, 'addr', 'add', `${address}/20`, 'dev', nic);
  topology.nics.push(nic);
  topology.serverAddresses.push(address);
}
