import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { destinationPriority, isPlumbingRoute } from '../../src/domain/destinations.js';
import { describeRule } from '../../src/domain/model.js';
import { plan } from '../../src/domain/planner.js';
import { MirrorBuilder, PROTO, route } from '../support/builders.js';

const RTN_BLACKHOLE = 6;
const config = (patch: (c: Config) => void = () => {}): Config => {
  const c = defaultConfig();
  patch(c);
  return c;
};

/** A host with NIC eth0 (198.18.1.2/24, 2001:db8:1::2/64), docker0 and a Calico pod veth. */
function host(c: Config): MirrorBuilder {
  const b = new MirrorBuilder((r, name) => isPlumbingRoute(c, r, name));
  b.nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64');
  b.nic(3, 'docker0', '203.0.113.1/24');
  b.link(4, 'cali12ab');
  b.route(route({ dst: '203.0.113.0/24', oif: 3, scope: 253, protocol: 2, prefsrc: '203.0.113.1' }));
  b.route(route({ dst: '198.19.7.5/32', oif: 4, scope: 253 }));
  b.route(route({ dst: 'fe80::/64', oif: 4, protocol: 2 }));
  return b;
}
const destinationLines = (c: Config, b: MirrorBuilder) =>
  plan(c, b.mirror)
    .rules.filter((r) => r.priority === destinationPriority(c))
    .map((r) => `${describeRule(r)} proto ${r.protocol}`);

describe('destination rules (to <prefix> lookup main)', () => {
  it('cover what main routes through plumbing, ahead of the from rules, owned', () => {
    const c = config();
    expect(destinationLines(c, host(c))).toEqual([
      `from all to 198.19.7.5 lookup main pref 29997 proto ${PROTO}`,
      `from all to 203.0.113.0/24 lookup main pref 29997 proto ${PROTO}`,
    ]);
  });

  it('leave out defaults, blackholes, link-local IPv6 and prefixes of managed NICs', () => {
    const c = config((c) => (c.interfaces.exclude = [...c.interfaces.exclude, 'eth9']));
    const b = host(c);
    b.route(route({ gateway: '203.0.113.254', oif: 3 })); // a default via the bridge
    b.route(route({ dst: '198.19.0.0/26', type: RTN_BLACKHOLE, protocol: 12 }));
    b.nic(9, 'eth9', '198.18.1.3/24'); // an excluded NIC in eth0's subnet
    b.route(route({ dst: '198.18.1.0/24', oif: 9, scope: 253, protocol: 2 }));
    expect(destinationLines(c, b)).toEqual([
      `from all to 198.19.7.5 lookup main pref 29997 proto ${PROTO}`,
      `from all to 203.0.113.0/24 lookup main pref 29997 proto ${PROTO}`,
    ]);
  });

  it('follow a pod route away, and are off with container_routes: false', () => {
    const c = config();
    const b = host(c);
    b.delRoute(route({ dst: '198.19.7.5/32', oif: 4, scope: 253 }));
    expect(destinationLines(c, b)).toEqual([`from all to 203.0.113.0/24 lookup main pref 29997 proto ${PROTO}`]);
    const off = config((c) => (c.containerRoutes = false));
    expect(destinationLines(off, host(off))).toEqual([]);
  });

  it('add the configured exceptions, only for families with from rules', () => {
    const c = config((c) => {
      c.containerRoutes = false;
      c.exceptions = ['169.254.169.254/32', '2001:db8:ff::/48'];
    });
    expect(destinationLines(c, host(c))).toEqual([
      `from all to 169.254.169.254 lookup main pref 29997 proto ${PROTO}`,
      `from all to 2001:db8:ff::/48 lookup main pref 29997 proto ${PROTO}`,
    ]);
    const v4only = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    expect(destinationLines(c, v4only)).toEqual([`from all to 169.254.169.254 lookup main pref 29997 proto ${PROTO}`]);
    expect(destinationLines(c, new MirrorBuilder())).toEqual([]);
  });

  it('scale: 500 pods in a row are a few blocks, 500 apart are 500 rules', () => {
    const c = config();
    const pods = (address: (i: number) => string) => {
      const b = new MirrorBuilder((r, name) => isPlumbingRoute(c, r, name)).nic(2, 'eth0', '198.18.1.2/24');
      for (let i = 0; i < 500; i++) {
        b.link(100 + i, `cali${i}`);
        b.route(route({ dst: `${address(i)}/32`, oif: 100 + i, scope: 253 }));
      }
      return destinationLines(c, b);
    };
    // 198.19.0.0 .. 198.19.1.243: the union of the /32s, as the fewest prefixes.
    expect(pods((i) => `198.19.${i >> 8}.${i & 255}`)).toEqual([
      `from all to 198.19.0.0/24 lookup main pref 29997 proto ${PROTO}`,
      `from all to 198.19.1.0/25 lookup main pref 29997 proto ${PROTO}`,
      `from all to 198.19.1.128/26 lookup main pref 29997 proto ${PROTO}`,
      `from all to 198.19.1.192/27 lookup main pref 29997 proto ${PROTO}`,
      `from all to 198.19.1.224/28 lookup main pref 29997 proto ${PROTO}`,
      `from all to 198.19.1.240/30 lookup main pref 29997 proto ${PROTO}`,
    ]);
    // Every other address: nothing to merge.
    expect(pods((i) => `198.19.${(2 * i) >> 8}.${(2 * i) & 255}`)).toHaveLength(500);
  });

  it('merge nested and adjacent prefixes into their union, and only those', () => {
    const c = config((c) => (c.exceptions = ['198.51.100.0/25', '198.51.100.128/26', '198.51.100.192/26', '198.51.100.7/32', '203.0.113.0/25']));
    expect(destinationLines(c, new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24'))).toEqual([
      `from all to 198.51.100.0/24 lookup main pref 29997 proto ${PROTO}`,
      `from all to 203.0.113.0/25 lookup main pref 29997 proto ${PROTO}`,
    ]);
  });
});
