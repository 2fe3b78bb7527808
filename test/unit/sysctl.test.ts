import { describe, expect, it } from 'vitest';
import { findings, sharedSubnetInterfaces } from '../../src/kernel/sysctl.js';
import type { Plan } from '../../src/domain/planner.js';

const planOf = (prefixes: Record<string, string[]>): Plan =>
  ({
    interfaces: Object.entries(prefixes).map(([name, cidrs]) => ({
      link: { name },
      families: [{ family: 4, prefixes: cidrs.map((c) => ({ network: c.split('/')[0], length: Number(c.split('/')[1]) })) }],
    })),
  }) as unknown as Plan;

describe('sysctl checks', () => {
  it('find NICs whose IPv4 prefixes are equal, nested or around another NIC\'s, and no others', () => {
    expect(sharedSubnetInterfaces(planOf({ b0: ['198.18.0.0/20'], b1: ['198.18.0.0/20'], s3: ['198.19.3.0/24'] }))).toEqual(['b0', 'b1']);
    expect(sharedSubnetInterfaces(planOf({ a: ['198.18.0.0/16'], b: ['198.18.7.0/24'], c: ['198.19.0.0/24'] }))).toEqual(['a', 'b']);
    expect(sharedSubnetInterfaces(planOf({ a: ['198.18.1.0/24', '198.18.1.128/25'], b: ['198.18.2.0/24'] }))).toEqual([]);
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, k) => [`n${k}`, [`198.18.${k % 256}.0/24`]]));
    expect(sharedSubnetInterfaces(planOf(many))).toHaveLength(88); // 198.18.0-43 used twice
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
