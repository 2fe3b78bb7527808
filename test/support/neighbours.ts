// The neighbours' lab: a router, a multi-NIC host and a client, each in a network namespace of
// the test's own, and the machines that run real network managers in them (systemd-nspawn,
// support/machine.ts). The router machine's systemd-networkd serves DHCPv4 (DHCPServer=, a
// static lease per NIC's MAC address, short leases) and router advertisements (IPv6SendRA=)
// on r1..r3; the host's NICs e1..e3 face them; the client (198.51.100.10) sits behind the
// router's `rc`. Strict rp_filter on router and host: a reply that leaves the host through
// the wrong NIC is dropped. Addresses: 198.18.k.0/24 and 2001:db8:k::/64 per NIC.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { eventually, type Lab } from './lab.js';
import { Machine } from './machine.js';

const run = promisify(execFile);

export const NICS = [1, 2, 3];
/** DHCP leases this short renew every 3 s (T1 = half the lease). */
export const LEASE_S = 6;
/** Router lifetime in the RAs (networkd allows 4 s at least). */
export const RA_LIFETIME_S = 9;
export const CLIENT = '198.51.100.10';
/** Each host NIC's MAC address, which its static lease is given to. */
export const mac = (k: number) => `02:00:5e:10:00:0${k}`;

export function routerNetwork(k: number, gateway = `198.18.${k}.1`): string {
  return `[Match]
Name=r${k}

[Network]
Address=198.18.${k}.1/24
Address=198.18.${k}.254/24
Address=2001:db8:${k}::1/64
DHCPServer=yes
IPv6SendRA=yes
LinkLocalAddressing=ipv6
IPv6AcceptRA=no

[DHCPServer]
PoolOffset=100
PoolSize=50
DefaultLeaseTimeSec=${LEASE_S}
MaxLeaseTimeSec=${LEASE_S}
EmitDNS=no
EmitNTP=no
Router=${gateway}

[DHCPServerStaticLease]
MACAddress=${mac(k)}
Address=198.18.${k}.10

[IPv6SendRA]
RouterLifetimeSec=${RA_LIFETIME_S}
EmitDNS=no

[IPv6Prefix]
Prefix=2001:db8:${k}::/64
`;
}

/** The router's /etc files (relative paths): one .network per link. */
export function routerFiles(): Record<string, string> {
  return Object.fromEntries(NICS.map((k) => [`systemd/network/10-r${k}.network`, routerNetwork(k)]));
}

/**
 * The namespaces and links: host NICs e1..e3 (fixed MACs) to router r1..r3, client c0 behind
 * the router's rc, and an unmanaged pair x1/x2 on the host for tests' own probing.
 */
export async function buildNeighbours(lab: Lab): Promise<{ routerNs: string; hostNs: string; clientNs: string }> {
  const routerNs = await lab.namespace('r');
  const hostNs = await lab.namespace('h');
  const clientNs = await lab.namespace('c');
  await lab.sysctl(routerNs, 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1');
  await lab.sysctl(hostNs, 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1');
  for (const k of NICS) {
    await lab.veth(hostNs, `e${k}`, routerNs, `r${k}`);
    await lab.ip(hostNs, 'link', 'set', `e${k}`, 'address', mac(k));
  }
  await lab.veth(hostNs, 'x1', hostNs, 'x2');
  await lab.veth(routerNs, 'rc', clientNs, 'c0');
  await lab.ip(routerNs, 'addr', 'add', '198.51.100.1/24', 'dev', 'rc');
  await lab.ip(clientNs, 'addr', 'add', `${CLIENT}/24`, 'dev', 'c0');
  await lab.ip(clientNs, 'route', 'add', 'default', 'via', '198.51.100.1');
  return { routerNs, hostNs, clientNs };
}

export interface MachineSpec {
  name: string;
  netns: string;
  /** Files under /etc (relative paths), in place before boot. */
  etc: Record<string, string>;
  /** A directory whose usr/, etc/ and var/ are laid over the machine's (packages unpacked there). */
  extraRoot?: string;
}

/** Boots the machines side by side; if one fails, those that booted are shut down. */
export async function bootMachines(specs: MachineSpec[]): Promise<Machine[]> {
  const booted = await Promise.allSettled(
    specs.map((spec) =>
      Machine.boot({
        name: `symroute-${spec.name}-${process.pid}`,
        netns: spec.netns,
        overlays: spec.extraRoot ? ['/usr', '/etc', '/var'] : ['/etc', '/var'],
        prepare(upper) {
          if (spec.extraRoot) for (const dir of ['usr', 'etc', 'var']) copyInto(join(spec.extraRoot, dir), upper(`/${dir}`));
          for (const [path, text] of Object.entries(spec.etc)) {
            mkdirSync(dirname(join(upper('/etc'), path)), { recursive: true });
            // NetworkManager ignores connection files others can read; networkd reads as its own user.
            writeFileSync(join(upper('/etc'), path), text, { mode: path.includes('system-connections/') ? 0o600 : 0o644 });
          }
        },
      }),
    ),
  );
  const failed = booted.find((b) => b.status === 'rejected');
  if (failed) {
    await Promise.all(booted.map((b) => (b.status === 'fulfilled' ? b.value.shutdown() : undefined)));
    throw failed.reason;
  }
  return booted.map((b) => (b as PromiseFulfilledResult<Machine>).value);
}

/** The sum of a metric's series in symroute's /metrics (served in `ns` on 127.0.0.1:9477). */
export async function metricSum(lab: Lab, ns: string, name: string): Promise<number> {
  const text = await lab.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/**
 * Waits until symroute in `ns` has read everything that happened before, without counting as
 * drift: an address comes and goes on x1 (no network manager touches it), and symroute's rule
 * for it comes and goes (notifications are read in order).
 */
export async function caughtUp(lab: Lab, ns: string): Promise<void> {
  const hasProbeRule = async () => (await lab.ownedRules(ns)).some((r) => r.src === '198.19.255.1');
  await lab.ip(ns, 'addr', 'add', '198.19.255.1/32', 'dev', 'x1');
  await eventually(async () => expect(await hasProbeRule()).toBe(true));
  await lab.ip(ns, 'addr', 'del', '198.19.255.1/32', 'dev', 'x1');
  await eventually(async () => expect(await hasProbeRule()).toBe(false));
}

const NM_CACHE = join(tmpdir(), 'symroute-test-network-manager');
/** Debian's network-manager and the libraries it needs that this machine's root lacks. */
const NM_PACKAGES = ['network-manager', 'libnm0', 'libndp0', 'libteamdctl0', 'libmm-glib0', 'libbluetooth3', 'libnewt0.52'];

/**
 * NetworkManager unpacked (dpkg-deb -x, no maintainer scripts) into a cache dir laid out as
 * usr/, etc/, var/ (the packages' /lib goes under usr/lib: the root is merged-/usr), to be
 * laid over a machine's own. Never installed: this machine's root does not change. udev is
 * left out (it would upgrade the machine's systemd); NetworkManager runs without it.
 */
export async function networkManagerRoot(): Promise<string> {
  if (existsSync(join(NM_CACHE, 'usr/sbin/NetworkManager'))) return NM_CACHE;
  const scratch = mkdtempSync(join(tmpdir(), 'symroute-test-network-manager-'));
  try {
    await run('apt-get', ['download', ...NM_PACKAGES], { cwd: scratch, timeout: 120_000 });
    const root = join(scratch, 'root');
    mkdirSync(root);
    for (const deb of readdirSync(scratch).filter((f) => f.endsWith('.deb'))) await run('dpkg-deb', ['-x', join(scratch, deb), root]);
    if (existsSync(join(root, 'lib'))) {
      copyInto(join(root, 'lib'), join(root, 'usr/lib'));
      rmSync(join(root, 'lib'), { recursive: true });
    }
    try {
      renameSync(root, NM_CACHE);
    } catch (error) {
      if (!existsSync(join(NM_CACHE, 'usr/sbin/NetworkManager'))) throw error;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return NM_CACHE;
}

/** Copies a directory's contents into another (created if missing), keeping modes and links (cp -a). */
function copyInto(from: string, to: string): void {
  if (!existsSync(from)) return;
  mkdirSync(to, { recursive: true });
  execFileSync('cp', ['-a', `${from}/.`, `${to}/`]);
}
