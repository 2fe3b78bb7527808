// The two failures the README describes, rebuilt in namespaces. Addresses come from the
// benchmark range 198.18.0.0/15 and the documentation range 198.51.100.0/24 only.
// Case 2 is shared with `symroute demo`, so it lives in src/lab/netns.ts.
import type { Lab } from './lab.js';

export { addSharedSubnetNic, buildSharedSubnet, type SharedSubnet } from '../../src/lab/netns.js';

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
