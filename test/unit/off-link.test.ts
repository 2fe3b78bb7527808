// The daemon's off-link destination per family: worked out once from every address of the
// host, and again only when an address comes within reach of it, or when there was none
// and an address went.
import { describe, expect, it } from 'vitest';
import type { MirrorView } from '../../src/domain/mirror.js';
import type { Address } from '../../src/domain/model.js';
import { offLinkDestination } from '../../src/domain/reply-paths.js';
import { OffLinkDestinations } from '../../src/kernel/route-lookups.js';

const address = (cidr: string, ifindex = 2): Address => {
  const [text, length] = cidr.split('/');
  return { ifindex, family: text!.includes(':') ? 6 : 4, address: text!, prefixLength: Number(length) } as Address;
};

/** A mirror holding only addresses, counting how often they are all read. */
function mirrorOf(addresses: Address[]) {
  const held = new Map(addresses.map((a) => [`${a.address}/${a.prefixLength}`, a]));
  let scans = 0;
  const mirror = {
    get addresses() {
      scans++;
      return held;
    },
  } as unknown as MirrorView;
  return { mirror, held, scans: () => scans };
}

describe('off-link destinations', () => {
  it('works the destination out once, again when an address comes within reach of it, and agrees with a fresh look', () => {
    const { mirror, held, scans } = mirrorOf([address('198.18.0.10/24'), address('2001:db8::10/64')]);
    const destinations = new OffLinkDestinations(mirror);
    const first = destinations.get(4)!;
    expect(first).toBe(offLinkDestination(4, held.values()));
    destinations.get(4);
    expect(scans()).toBe(1);
    // An address elsewhere changes nothing.
    const elsewhere = address('198.19.0.10/24', 3);
    held.set('198.19.0.10/24', elsewhere);
    destinations.addressChanged('set', elsewhere);
    expect(destinations.get(4)).toBe(first);
    expect(scans()).toBe(1);
    // One whose prefix holds the destination puts it on a link.
    const covering = address(`${first}/24`, 3);
    held.set(`${first}/24`, covering);
    destinations.addressChanged('set', covering);
    const second = destinations.get(4)!;
    expect(second).not.toBe(first);
    expect(second).toBe(offLinkDestination(4, held.values()));
    expect(scans()).toBe(2);
  });

  it('looks again when there was none off every link and an address went', () => {
    const everything = address('0.0.0.0/0');
    const { mirror, held } = mirrorOf([everything]);
    const destinations = new OffLinkDestinations(mirror);
    expect(destinations.get(4)).toBeUndefined();
    held.clear();
    destinations.addressChanged('delete', everything);
    expect(destinations.get(4)).toBe(offLinkDestination(4, []));
  });
});
