// plan() and computeChanges() on a large host: 128 NICs, dual stack, two addresses each,
// a per-device default route per NIC in the main table. Both run on every reconcile pass.
import { bench, describe } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { computeChanges } from '../../src/domain/diff.js';
import { Mirror } from '../../src/domain/mirror.js';
import { RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE } from '../../src/netlink/constants.js';
import { eventFromMessage } from '../../src/kernel/events.js';
import { routeToMessage } from '../../src/kernel/objects.js';
import type { RtnlBody } from '../../src/netlink/messages.js';
import { plan } from '../../src/domain/planner.js';
import { PrefixOwners } from '../../src/domain/claims.js';
import { addressToBytes } from '../../src/net/ip.js';

const NICS = 128;
const config = defaultConfig();
const mirror = new Mirror();
const apply = (type: number, flags: number, body: RtnlBody) => {
  const event = eventFromMessage(type, flags, body);
  if (event) mirror.apply(event);
};
for (let i = 2; i < NICS + 2; i++) {
  apply(RTM_NEWLINK, 0, { kind: 'link', header: { family: 0, type: 1, index: i, flags: 1, change: 0 }, attributes: { ifname: `eth${i}` } });
  const octet = i % 250;
  for (const [family, address, prefixlen] of [
    [2, `198.18.${octet}.10`, 24],
    [2, `198.18.${octet}.11`, 24],
    [10, `2001:db8:${i.toString(16)}::10`, 64],
  ] as const) {
    apply(RTM_NEWADDR, 0, {
      kind: 'address',
      header: { family, prefixlen, flags: 0x80, scope: 0, index: i },
      attributes: { address, local: address, flags: 0x80 },
    });
  }
  apply(
    RTM_NEWROUTE,
    0,
    routeToMessage({ family: 4, table: 254, dst: '0.0.0.0', dstLength: 0, metric: 100 + i, protocol: 16, scope: 0, type: 1, oif: i, gateway: `198.18.${octet}.1` }),
  );
}
const desired = plan(config, mirror);

describe(`planner, ${NICS} NICs`, () => {
  bench(`plan(): ${desired.rules.length} rules, ${desired.routes.length} routes`, () => {
    plan(config, mirror);
  });
  bench('computeChanges() against an empty kernel', () => {
    computeChanges(desired, mirror, config.protocol);
  });
});

// Which connected prefixes overlap one: every prefix shape a user hits, among 1000 NICs
// holding a /28 each in 198.18.0.0/18 (and a /64 each): wider (/24 over /28s), equal,
// narrower (a /32 host address), IPv6 /64 and /128.
const owned = (family: 4 | 6, network: string, length: number, owner: string) => ({ family, network, bits: addressToBytes(network), length, owner });
const owners = new PrefixOwners();
const ipv4 = (n: number) => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
for (let k = 0; k < 1000; k++) {
  owners.add(owned(4, ipv4((198 << 24) + (18 << 16) + 16 * k), 28, `n${k}`), k);
  owners.add(owned(6, `2001:db8:${k.toString(16)}::`, 64, `n${k}`), k);
}
describe('connected prefixes overlapping one, 1000 NICs', () => {
  for (const [shape, family, network, length] of [
    ['wider: a /24 over 16 /28s', 4, '198.18.7.0', 24],
    ['equal: a /28', 4, '198.18.7.16', 28],
    ['narrower: a /32', 4, '198.18.7.18', 32],
    ['IPv6 /64', 6, '2001:db8:7::', 64],
    ['IPv6 /128', 6, '2001:db8:7::2', 128],
  ] as const) {
    bench(shape, () => {
      owners.overlapping(owned(family, network, length, 'x'));
    });
  }
});
