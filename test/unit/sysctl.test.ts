import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { plan } from '../../src/domain/planner.js';
import { findings } from '../../src/host/sysctl.js';
import { MirrorBuilder } from '../support/builders.js';

/** The planned interfaces sharing an IPv4 subnet, for NICs with these addresses (host part .2). */
const sharedSubnets = (prefixes: Record<string, string[]>): readonly string[] => {
  const b = new MirrorBuilder();
  Object.entries(prefixes).forEach(([name, cidrs], i) => {
    const withHost = cidrs.map((cidr) => cidr.replace(/\.0\//, '.2/').replace(/\.128\//, '.130/'));
    b.nic(i + 2, name, ...withHost);
  });
  return plan({ ...defaultConfig(), interfaces: { include: ['*'], exclude: [] } }, b.mirror).sharedSubnets;
};

describe('sysctl checks', () => {
  it('find NICs whose IPv4 prefixes are equal, nested or around another NIC\'s, and no others', () => {
    expect(sharedSubnets({ b0: ['198.18.0.0/20'], b1: ['198.18.0.0/20'], s3: ['198.19.3.0/24'] })).toEqual(['b0', 'b1']);
    expect(sharedSubnets({ a: ['198.18.0.0/16'], b: ['198.18.7.0/24'], c: ['198.19.0.0/24'] })).toEqual(['a', 'b']);
    expect(sharedSubnets({ a: ['198.18.1.0/24', '198.18.1.128/25'], b: ['198.18.2.0/24'] })).toEqual([]);
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, k) => [`n${k}`, [`198.18.${k % 256}.0/24`]]));
    expect(sharedSubnets(many)).toHaveLength(88); // 198.18.0-43 used twice
  });

  it('want arp_ignore 1 or 2 and arp_announce 2, the larger of all and the NIC counting', () => {
    const all = { arp_ignore: 0, arp_announce: 0, rp_filter: 1 };
    expect(findings('b0', all, { arp_ignore: 1, arp_announce: 2, rp_filter: 0 })).toEqual([]);
    expect(findings('b0', { ...all, arp_ignore: 2, arp_announce: 2 }, { arp_ignore: 0, arp_announce: 0, rp_filter: 0 })).toEqual([]);
    const bad = findings('b0', { ...all, arp_ignore: 8 }, { arp_ignore: 1, arp_announce: 1, rp_filter: 0 });
    expect(bad.map((f) => [f.key, f.effective, f.fixable])).toEqual([['arp_ignore', 8, false], ['arp_announce', 1, true]]);
    expect(bad[0]!.message).toContain('set net.ipv4.conf.all.arp_ignore (now 8)=1');
  });
});
