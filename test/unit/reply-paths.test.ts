// Reply paths, pure: which lookups prove them (src/domain/reply-paths.ts), what the kernel's
// answers mean, and how the daemon's verifier (src/control/verifier.ts) turns verdicts into
// one warning per break, one line per heal, and a gauge per NIC, never from a pass's middle.
import { describe, expect, it, vi } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { CONFIRM_AFTER_MS, ReplyPathVerifier, type VerifierObserver } from '../../src/control/verifier.js';
import { FR_ACT_PROHIBIT } from '../../src/domain/constants.js';
import { plan } from '../../src/domain/planner.js';
import { judge, Neighbours, onCollidedTable, offLinkDestination, probesOf, type LookupAnswer, type PathVerdict, type Probe } from '../../src/domain/reply-paths.js';
import { MirrorBuilder, route, rule } from '../support/builders.js';

const RTN_UNICAST = 1;
const RTN_LOCAL = 2;

function planOf(build: (m: MirrorBuilder) => void) {
  const m = new MirrorBuilder();
  build(m);
  const addresses = [...m.mirror.addresses.values()];
  const local = new Set(addresses.map((a) => a.address));
  const context = {
    neighbour: new Neighbours((address) => local.has(address)).of,
    offLink: (family: 4 | 6) => offLinkDestination(family, addresses),
  };
  return { interfaces: plan(defaultConfig(), m.mirror).interfaces, context };
}

const paths = (probes: Probe[]) => probes.map((p) => `${p.ifname} ${p.direction} ${p.address} ${p.peer}${p.offLink ? ' off-link' : ''}`);

describe('the lookups that prove reply paths', () => {
  it('ask about the first neighbour in the prefix that is not local, each way, and off-link only with a gateway', () => {
    const { interfaces, context } = planOf((m) => {
      m.nic(2, 'eth0', '198.18.1.10/24');
      m.nic(3, 'eth1', '198.18.1.1/24', '198.18.2.10/24');
      m.route(route({ dst: '0.0.0.0/0', gateway: '198.18.2.1', oif: 3 }));
    });
    expect(interfaces.flatMap((i) => paths(probesOf(i, context)))).toEqual([
      // 198.18.1.1 is eth1's: the next address is eth0's neighbour.
      'eth0 egress 198.18.1.10 198.18.1.2',
      'eth0 ingress 198.18.1.10 198.18.1.2',
      'eth1 egress 198.18.1.1 198.18.1.2',
      'eth1 ingress 198.18.1.1 198.18.1.2',
      'eth1 egress 198.18.2.10 198.18.2.1',
      'eth1 ingress 198.18.2.10 198.18.2.1',
      'eth1 egress 198.18.1.1 203.0.113.254 off-link',
    ]);
  });

  it('ask past every address the host holds: eight NICs numbered .1 to .8 in one subnet all use .9, found once', () => {
    const { interfaces, context } = planOf((m) => {
      for (let k = 1; k <= 8; k++) m.nic(k + 1, `eth${k}`, `198.18.1.${k}/24`);
    });
    expect(interfaces.flatMap((i) => paths(probesOf(i, context))).filter((p) => p.includes('egress'))).toEqual(
      Array.from({ length: 8 }, (_, i) => `eth${i + 1} egress 198.18.1.${i + 1} 198.18.1.9`),
    );
    let asked = 0;
    const neighbours = new Neighbours(() => (asked++, true));
    expect(neighbours.of('198.18.1.0', 24, 4)).toBeUndefined(); // every address is the host's
    expect(asked).toBe(254); // .1 to .254: never the broadcast
    expect(neighbours.of('198.18.1.0', 24, 4)).toBeUndefined();
    expect(asked).toBe(254); // once per prefix
    const ends = new Neighbours((address) => address === '198.18.2.0');
    expect([ends.of('198.18.2.0', 31, 4), ends.of('198.18.3.0', 30, 4), ends.of('2001:db8::', 64, 6)]).toEqual(['198.18.2.1', '198.18.3.1', '2001:db8::1']);
  });

  it('take an off-link destination outside every connected prefix; none in a /32; IPv6 alike', () => {
    const { interfaces, context } = planOf((m) => {
      m.nic(2, 'eth0', '203.0.113.10/24', '198.18.5.5/32', '2001:db8:1::10/64');
      m.route(route({ dst: '0.0.0.0/0', gateway: '203.0.113.1', oif: 2 }));
      m.route(route({ dst: '::/0', gateway: '2001:db8:1::1', oif: 2 }));
    });
    expect(paths(probesOf(interfaces[0]!, context))).toEqual([
      'eth0 egress 203.0.113.10 203.0.113.1',
      'eth0 ingress 203.0.113.10 203.0.113.1',
      'eth0 egress 203.0.113.10 198.51.100.254 off-link',
      'eth0 egress 2001:db8:1::10 2001:db8:1::1',
      'eth0 ingress 2001:db8:1::10 2001:db8:1::1',
      'eth0 egress 2001:db8:1::10 2001:db8:ffff:ffff::fe off-link',
    ]);
  });

  it('probe a NIC whose table collides like any other; only a broken path there is a collision', () => {
    const { interfaces, context } = planOf((m) => {
      m.nic(2, 'eth0', '198.18.1.10/24');
      m.route(route({ dst: '203.0.113.0/24', oif: 2, table: 1002, protocol: 4 }));
    });
    const plan = interfaces[0]!;
    const probes = probesOf(plan, context);
    expect(probes.map((p) => `${p.direction} ${p.address} ${p.peer}`)).toEqual(['egress 198.18.1.10 198.18.1.1', 'ingress 198.18.1.10 198.18.1.1']);
    const names = (ifindex: number) => (ifindex === 2 ? 'eth0' : 'eth1');
    const held = judge(probes[0]!, { ok: true, table: 1002, oif: 2, type: RTN_UNICAST }, () => [], names);
    expect(onCollidedTable(held, plan)).toBe(held);
    const broken = onCollidedTable(judge(probes[0]!, { ok: true, table: 254, oif: 3, type: RTN_UNICAST }, () => [], names), plan);
    expect(broken.failure).toMatchObject({ reason: 'table_collision', table: 1002 });
    expect(broken.failure!.detail).toMatch(/^a reply from 198\.18\.1\.10 to 198\.18\.1\.1 would leave by eth1, not eth0 \(table 254\); eth0's table 1002 is left alone: /);
  });
});

describe("the kernel's answers, judged", () => {
  const egress: Probe = { direction: 'egress', family: 4, ifindex: 3, ifname: 'b1', address: '198.18.1.2', peer: '198.18.0.1', offLink: false };
  const ingress: Probe = { ...egress, direction: 'ingress' };
  const names = (ifindex: number) => ['lo', '', 'b0', 'b1'][ifindex] ?? `if${ifindex}`;
  const foreign = rule({ family: 4, priority: 100, table: 500, protocol: 4 });
  const viaB0: LookupAnswer = { ok: true, table: 500, oif: 2, type: RTN_UNICAST };
  const viaB1: LookupAnswer = { ok: true, table: 1003, oif: 3, type: RTN_UNICAST };

  it('hold when the reply leaves by the NIC and the request is delivered locally', () => {
    expect(judge(egress, viaB1, () => [], names).failure).toBeNull();
    expect(judge(ingress, { ok: true, table: 255, type: RTN_LOCAL }, () => [], names, viaB1).failure).toBeNull();
  });

  it('name the device and the rule and table that took the reply', () => {
    expect(judge(egress, viaB0, () => [foreign], names).failure).toEqual({
      reason: 'egress_other_device',
      detail: 'a reply from 198.18.1.2 to 198.18.0.1 would leave by b0, not b1 (rule from all lookup 500 pref 100, table 500)',
      table: 500,
      dev: 2,
      rule: foreign,
    });
  });

  it('tell a refusal by a rule from a missing route', () => {
    const prohibit = rule({ from: '198.18.1.2', priority: 101, action: FR_ACT_PROHIBIT, table: 0, protocol: 4 });
    const refused: LookupAnswer = { ok: false, errno: 'EACCES', message: 'permission denied' };
    expect(judge(egress, refused, () => [prohibit], names).failure).toMatchObject({ reason: 'egress_prohibited', rule: prohibit });
    expect(judge(egress, { ok: false, errno: 'ENETUNREACH', message: 'network is unreachable' }, () => [], names).failure).toMatchObject({
      reason: 'no_route',
      detail: 'a reply from 198.18.1.2 to 198.18.0.1 finds no route: network is unreachable (ENETUNREACH)',
    });
  });

  it('blame rp_filter for EXDEV, and for EINVAL only when the reverse path leaves by another device', () => {
    const exdev: LookupAnswer = { ok: false, errno: 'EXDEV', message: 'invalid cross-device link' };
    const einval: LookupAnswer = { ok: false, errno: 'EINVAL', message: 'invalid argument' };
    expect(judge(ingress, exdev, () => [], names).failure?.reason).toBe('ingress_rp_filter');
    expect(judge(ingress, einval, () => [], names, viaB0).failure).toEqual({
      reason: 'ingress_rp_filter',
      detail: 'a request from 198.18.0.1 arriving on b1 is dropped by rp_filter: the reverse path to 198.18.0.1 leads back through b0 (EINVAL)',
      dev: 2,
    });
    expect(judge(ingress, einval, () => [], names, viaB1).failure?.reason).toBe('ingress_refused');
  });
});

describe('the verifier', () => {
  const probe = (ifindex: number, ifname: string): Probe => ({
    direction: 'egress', family: 4, ifindex, ifname, address: `198.18.1.${ifindex}`, peer: '198.18.0.1', offLink: false,
  });
  const ok = (p: Probe): PathVerdict => ({ probe: p, failure: null });
  const broken = (p: Probe): PathVerdict => ({ probe: p, failure: { reason: 'egress_other_device', detail: 'elsewhere' } });

  function harness(answers: Array<(only: ReadonlySet<number> | undefined) => PathVerdict[]>, current: () => boolean = () => true) {
    const events: string[] = [];
    const asked: Array<number[] | 'all'> = [];
    let passes = 0;
    const observer: VerifierObserver = {
      replyPathBroke: (v) => events.push(`broke ${v.probe.ifname}`),
      replyPathHealed: (v) => events.push(`healed ${v.probe.ifname}`),
      replyPathsOfNic: (ifname, _family, holds) => events.push(`${ifname}=${holds}`),
      verifyFailed: (error) => events.push(`failed ${error.message}`),
    };
    const verifier = new ReplyPathVerifier(
      {
        verify: async (only) => {
          asked.push(only ? [...only].sort() : 'all');
          const next = answers.shift();
          if (!next) throw new Error('no answer scripted');
          return next(only);
        },
        current,
        stateVersion: () => String(passes),
      },
      observer,
    );
    return { verifier, events, asked, pass: () => passes++ };
  }

  it('warns once per break (seen twice in a row), once per heal, and keeps the NIC gauge; a NIC with no paths left loses it', async () => {
    const [b0, b1] = [probe(2, 'b0'), probe(3, 'b1')];
    const h = harness([() => [ok(b0), ok(b1)], () => [broken(b1)], () => [broken(b1)], () => [ok(b1)], () => []]);
    h.verifier.request('all');
    await h.verifier.idle();
    h.verifier.request([3]);
    await h.verifier.idle();
    h.verifier.request([3]);
    await h.verifier.idle();
    h.verifier.request([3]);
    await h.verifier.idle();
    h.verifier.request([3]);
    await h.verifier.idle();
    expect(h.events).toEqual(['b0=true', 'b1=true', 'b1=true', 'broke b1', 'b1=false', 'healed b1', 'b1=true', 'b1=null']);
    h.verifier.stop();
  });

  it('asks again about a path seen broken once, and says nothing of it when it holds by then', async () => {
    vi.useFakeTimers();
    try {
      const [b0, b1] = [probe(2, 'b0'), probe(3, 'b1')];
      // Caught in the middle of someone else's change, then whole again.
      const h = harness([() => [ok(b0), ok(b1)], () => [ok(b0), broken(b1)], () => [ok(b1)], () => [broken(b1)], () => [broken(b1)]]);
      h.verifier.request('all');
      await vi.advanceTimersByTimeAsync(0);
      h.verifier.request('all');
      await vi.advanceTimersByTimeAsync(0);
      expect(h.events).toEqual(['b0=true', 'b1=true', 'b0=true', 'b1=true']);
      await vi.advanceTimersByTimeAsync(CONFIRM_AFTER_MS + 1);
      expect(h.asked).toEqual(['all', 'all', [3]]);
      expect(h.events.slice(4)).toEqual(['b1=true']);
      // A break that lasts: reported when the second look confirms it.
      h.verifier.request([3]);
      await vi.advanceTimersByTimeAsync(0);
      await vi.advanceTimersByTimeAsync(CONFIRM_AFTER_MS + 1);
      expect(h.asked).toEqual(['all', 'all', [3], [3], [3]]);
      expect(h.events.slice(5)).toEqual(['b1=true', 'broke b1', 'b1=false']);
      await vi.advanceTimersByTimeAsync(10 * CONFIRM_AFTER_MS);
      expect(h.asked).toHaveLength(5); // nothing left to confirm: no timer
      h.verifier.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it('merges requests made while it runs into one more, and throws away what a pass overlapped', async () => {
    const b1 = probe(3, 'b1');
    const h = harness([
      () => {
        // While the kernel answers: a pass for NIC 3 runs (and asks for it again), and more
        // NICs are asked for.
        h.pass();
        h.verifier.request([3]);
        h.verifier.request([2]);
        h.verifier.request([4]);
        return [broken(b1)];
      },
      () => [ok(b1)],
    ]);
    h.verifier.request([3]);
    await h.verifier.idle();
    expect(h.asked).toEqual([[3], [2, 3, 4]]);
    expect(h.events).toEqual(['b1=true']);
  });

  it('waits while the desired state is behind the kernel, until asked again', async () => {
    const b1 = probe(3, 'b1');
    let current = false;
    const h = harness([() => [ok(b1)]], () => current);
    h.verifier.request([3]);
    await h.verifier.idle();
    expect(h.asked).toEqual([]);
    current = true;
    h.verifier.request([2]);
    await h.verifier.idle();
    expect(h.asked).toEqual([[2, 3]]);
  });

  it('sweeps every NIC at the interval it is given last, and not at all once given false (a reload)', async () => {
    vi.useFakeTimers();
    try {
      const b1 = probe(3, 'b1');
      const h = harness([() => [ok(b1)], () => [ok(b1)], () => [ok(b1)]]);
      h.verifier.sweepEvery(60_000);
      h.verifier.sweepEvery(1_000);
      await vi.advanceTimersByTimeAsync(2_500);
      expect(h.asked).toEqual(['all', 'all']);
      h.verifier.sweepEvery(false);
      await vi.advanceTimersByTimeAsync(120_000);
      expect(h.asked).toEqual(['all', 'all']);
      h.verifier.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
