// The two failures from PROBLEM.md, rebuilt in namespaces. Addresses come from the
// benchmark range 198.18.0.0/15 and the documentation range 198.51.100.0/24 only.
import type { Lab } from './lab.js';

export interface SharedSubnet {
  switchNs: string;
  clientNs: string; // host A
  serverNs: string; // host B, the multi-NIC server
  clientAddress: string;
  nics: string[]; // b0..b{n-1}
  serverAddresses: string[]; // serverAddresses[k] lives on nics[k]
}

/**
 * Case 2: host B has `count` NICs in one /20 behind a bridge, with strict rp_filter and
 * arp_ignore=1, so without symroute host A reaches only one of B's addresses.
 */
export async function buildSharedSubnet(lab: Lab, count = 8): Promise<SharedSubnet> {
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
  const nics: string[] = [];
  const serverAddresses: string[] = [];
  for (let k = 0; k < count; k++) {
    const nic = `b${k}`;
    await addSharedSubnetNic(lab, { switchNs, serverNs }, nic, `198.18.1.${k + 1}`);
    nics.push(nic);
    serverAddresses.push(`198.18.1.${k + 1}`);
  }
  return { switchNs, clientNs, serverNs, clientAddress, nics, serverAddresses };
}

/** One more NIC for host B on the shared /20 (strict rp_filter on it, like the others). */
export async function addSharedSubnetNic(
  lab: Lab,
  topology: { switchNs: string; serverNs: string },
  nic: string,
  address: string,
): Promise<void> {
  await lab.plugIntoBridge(topology.switchNs, 'br0', `p${nic}`, topology.serverNs, nic);
  await lab.sysctl(topology.serverNs, `net.ipv4.conf.${nic}.rp_filter=1`);
  await lab.ip(topology.serverNs, 'addr', 'add', `${address}/20`, 'dev', nic);
}

export interface RoutedSubnets {
  routerNs: string;
  serverNs: string;
  clientNs: string;
  clientAddress: string;
  nics: string[]; // s1..s4
  serverAddresses: string[]; // 198.18.k.10 on s{k}
  gateways: string[]; // 198.18.k.1, the router's end of s{k}
}

/**
 * Case 1: a server with 4 NICs in 4 subnets behind one router (ip_forward, strict rp_filter
 * everywhere), default route via the first NIC only, and a client in a fifth subnet.
 * `learnGateways` adds one per-device default route per NIC to the server's main table
 * with rising metrics, the way DHCP clients and NetworkManager do.
 */
export async function buildRoutedSubnets(
  lab: Lab,
  options: { serverRpFilter?: boolean; learnGateways?: boolean } = {},
): Promise<RoutedSubnets> {
  const routerNs = await lab.namespace('r');
  const serverNs = await lab.namespace('s');
  const clientNs = await lab.namespace('c');
  await lab.sysctl(routerNs, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1');
  if (options.serverRpFilter) {
    await lab.sysctl(serverNs, 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1');
  }
  const nics: string[] = [];
  const serverAddresses: string[] = [];
  const gateways: string[] = [];
  for (let k = 1; k <= 4; k++) {
    const nic = `s${k}`;
    await lab.veth(routerNs, `r${k}`, serverNs, nic);
    await lab.ip(routerNs, 'addr', 'add', `198.18.${k}.1/24`, 'dev', `r${k}`);
    await lab.ip(serverNs, 'addr', 'add', `198.18.${k}.10/24`, 'dev', nic);
    await lab.sysctl(routerNs, `net.ipv4.conf.r${k}.rp_filter=1`);
    if (options.serverRpFilter) await lab.sysctl(serverNs, `net.ipv4.conf.${nic}.rp_filter=1`);
    nics.push(nic);
    serverAddresses.push(`198.18.${k}.10`);
    gateways.push(`198.18.${k}.1`);
  }
  if (options.learnGateways) {
    for (let k = 1; k <= 4; k++) {
      await lab.ip(serverNs, 'route', 'add', 'default', 'via', `198.18.${k}.1`, 'dev', `s${k}`, 'metric', String(100 + k));
    }
  } else {
    await lab.ip(serverNs, 'route', 'add', 'default', 'via', '198.18.1.1', 'dev', 's1');
  }
  await lab.veth(routerNs, 'rc', clientNs, 'c0');
  await lab.ip(routerNs, 'addr', 'add', '198.51.100.1/24', 'dev', 'rc');
  await lab.sysctl(routerNs, 'net.ipv4.conf.rc.rp_filter=1');
  const clientAddress = '198.51.100.10';
  await lab.ip(clientNs, 'addr', 'add', `${clientAddress}/24`, 'dev', 'c0');
  await lab.ip(clientNs, 'route', 'add', 'default', 'via', '198.51.100.1');
  return { routerNs, serverNs, clientNs, clientAddress, nics, serverAddresses, gateways };
}
