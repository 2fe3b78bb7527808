// The rules that let packets skip symroute's blocks (src/domain/rule-skips.ts) change no
// decision of the kernel's: on a host with enough managed addresses and pods for both skips,
// and foreign rules before symroute's and between them and main, `ip route get` answers
// every source and destination class the same with the skip rules as with them deleted by
// hand (the layout before them), locally sent (`from`) and forwarded (`from … iif`); and
// `symroute verify` finds every reply path right.
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, type IpRule } from '../support/lab.js';

/** A goto or a nop: they carry no table. */
const isSkip = (r: { table?: string }) => r.table === undefined;
/** A rule `from <source> lookup <table>`. */
const isFromRule = (r: IpRule) => !isSkip(r) && r.src !== undefined && r.src !== 'all';

/** Every other address, so their rules cannot be merged: 30 of them, enough for the destination skip. */
const pods = Array.from({ length: 30 }, (_, i) => `198.19.0.${2 * i + 1}`);

interface Host {
  /** eth0's addresses (/24 each), then eth1's (198.18.1.x: its gateway .254 learned from main). */
  readonly v4: readonly string[];
  /** eth0's (/64). */
  readonly v6: readonly string[];
  /** Sources to ask about: managed ones first, then unmanaged ones inside the covers. */
  readonly probes: readonly string[];
  readonly probes6: readonly string[];
  /** What the skip rules must look like (owned gotos and nops, both families). */
  readonly expectSkips: (skips: IpRule[]) => void;
}

/**
 * Small: eth0 holds 198.18.0.10 .. .33 and 2001:db8::10 .. ::27, eth1 198.18.1.1 .. .4; the
 * flat layout (the `from` rules at P). Each prefix keeps a free neighbour for the reply-path probes.
 */
const small: Host = {
  v4: [...Array.from({ length: 24 }, (_, i) => `198.18.0.${i + 10}`), ...Array.from({ length: 4 }, (_, i) => `198.18.1.${i + 1}`)],
  v6: Array.from({ length: 24 }, (_, i) => `2001:db8::${(i + 16).toString(16)}`),
  probes: ['198.18.0.10', '198.18.0.17', '198.18.0.21', '198.18.0.33', '198.18.1.4'],
  probes6: ['2001:db8::10', '2001:db8::1c', '2001:db8::27'],
  expectSkips: (skips) => {
    // Both skips in IPv4 (28 sources, 31 destinations), the source skip in IPv6 (24 sources).
    expect(new Set(skips.map((r) => `${r.priority}${'nop' in r ? ' nop' : ` goto ${r.goto}`}`))).toEqual(
      new Set(['29995 goto 29997', '29996 goto 29998', '29998 goto 30000', '29999 goto 30001', '30001 nop']),
    );
  },
};

/**
 * Large enough for the tree in both families: eth0 holds 198.18.0.10 .. .109 and
 * 198.18.2.2 .. .51 (two /24s), 2001:db8::10 .. ::6f (96); eth1 198.18.1.1 .. .4.
 */
const large: Host = {
  v4: [
    ...Array.from({ length: 100 }, (_, i) => `198.18.0.${i + 10}`),
    ...Array.from({ length: 50 }, (_, i) => `198.18.2.${i + 2}`),
    ...Array.from({ length: 4 }, (_, i) => `198.18.1.${i + 1}`),
  ],
  v6: Array.from({ length: 96 }, (_, i) => `2001:db8::${(i + 16).toString(16)}`),
  probes: ['198.18.0.10', '198.18.0.17', '198.18.0.31', '198.18.0.32', '198.18.0.63', '198.18.0.64', '198.18.0.100', '198.18.0.109', '198.18.2.2', '198.18.2.33', '198.18.2.51', '198.18.1.4'],
  probes6: ['2001:db8::10', '2001:db8::3f', '2001:db8::40', '2001:db8::6f'],
  expectSkips: (skips) => {
    // The tree (from 48 `from` rules on): branches at P+2.., leaf slots at P+34.., landing at P+162.
    const at = (priority: number) => skips.filter((r) => r.priority === priority);
    expect(at(30162).map((r) => 'nop' in r)).toEqual([true, true]);
    expect(at(29999).map((r) => r.goto)).toEqual([30162, 30162]);
    expect(skips.filter((r) => r.goto !== undefined && r.priority > 30001 && r.priority < 30162 && r.src !== 'all').length).toBeGreaterThanOrEqual(4);
    expect(skips.every((r) => r.priority < 30000 || r.priority > 30001)).toBe(true);
  },
};

describe('skip rules', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it.each([
    ['a flat block of `from` rules', small],
    ['a tree of `from` rules', large],
  ])('leave every route lookup as it was, with foreign rules before and after symroute, and every reply path right: %s', async (_, host) => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const peer = await lab.namespace('x');
    await lab.sysctl(ns, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv6.conf.all.forwarding=1');
    await lab.veth(ns, 'up0', peer, 'x0');
    await lab.veth(ns, 'eth0', peer, 'x1');
    await lab.veth(ns, 'eth1', peer, 'x2');
    await lab.bridge(ns, 'docker0');
    await lab.ip(ns, 'link', 'add', 'cali0', 'type', 'ifb');
    await lab.ip(ns, 'link', 'set', 'cali0', 'up');
    const lines = [
      'addr add 198.51.100.2/28 dev up0',
      'route add default via 198.51.100.1 dev up0',
      ...host.v4.map((a) => `addr add ${a}/24 dev ${a.startsWith('198.18.1.') ? 'eth1' : 'eth0'}`),
      ...host.v6.map((a) => `addr add ${a}/64 dev eth0 nodad`),
      'route add default via 198.18.1.254 dev eth1 metric 200',
      'addr add 198.18.200.1/24 dev docker0',
      ...pods.map((p) => `route add ${p}/32 dev cali0`),
      'addr add 203.0.113.9/32 dev lo',
      // Another tool's rules: one before symroute's, two between them and main.
      'route add 198.51.100.128/26 dev up0 table 501',
      'rule add from 198.18.0.17 lookup 501 pref 100',
      'route add 198.51.100.64/26 dev up0 table 500',
      'route add 198.19.0.0/16 dev up0 table 500',
      'route add 198.18.0.0/16 dev up0 table 500',
      'rule add lookup 500 pref 31000',
      'route add 2001:db8:ffff::/48 dev up0 table 500',
    ];
    await lab.ip(ns, '-batch', lab.writeConfig(`${lines.join('\n')}\n`, 'setup.batch'));
    await lab.ip(ns, '-6', 'rule', 'add', 'lookup', '500', 'pref', '31000');
    const config = lab.writeConfig('interfaces:\n  include: ["eth*"]\nmetrics: {listen: false}\niproute2_dir: false\nverify: {interval: false}\n');
    const once = await lab.runCli(ns, ['run', '--once', '--config', config]);
    expect(once.code, once.stderr + once.stdout).toBe(0);

    const owned = [...(await lab.ownedRules(ns, 4)), ...(await lab.ownedRules(ns, 6))];
    const fromRules = owned.filter(isFromRule);
    expect(fromRules).toHaveLength(host.v4.length + host.v6.length);
    host.expectSkips(owned.filter(isSkip));
    const verify = await lab.runCli(ns, ['verify', '--json', '--config', config]);
    const paths = (JSON.parse(verify.stdout) as { paths: Array<{ ok: boolean }> }).paths;
    expect(verify.code, verify.stdout).toBe(0);
    expect(paths.length).toBeGreaterThanOrEqual(2 * (host.v4.length + host.v6.length));
    expect(paths.filter((p) => !p.ok)).toEqual([]);

    // Every class of source (managed first, in the middle, last, at the edges of the tree's
    // leaves, on the other NIC, behind the foreign rule before symroute's; inside a cover but
    // not managed; local but unmanaged; remote, arriving on a NIC, the bridge or a pod) to
    // every class of destination.
    const destinations = ['198.18.0.200', '198.18.1.200', '198.18.200.5', pods[0]!, pods[29]!, '198.19.0.2', '198.19.0.200', '198.51.100.70', '198.51.100.130', '203.0.113.50'];
    const local = [...host.probes, '198.18.200.1', '198.51.100.2', '203.0.113.9'];
    const arriving: Array<[string, string]> = [
      ['198.18.0.200', 'eth0'],
      ['198.18.0.9', 'eth0'],
      ['198.18.0.34', 'eth0'],
      ['198.18.0.15', 'eth0'],
      ['198.18.2.60', 'eth0'],
      ['198.18.200.5', 'docker0'],
      [pods[3]!, 'cali0'],
      ['198.51.100.1', 'up0'],
      ['203.0.113.77', 'up0'],
    ];
    const destinations6 = ['2001:db8::200', '2001:db8:ffff::1', '2001:db8:5::1'];
    const arriving6: Array<[string, string]> = [
      ['2001:db8::200', 'eth0'],
      ['2001:db8::30', 'eth0'],
      ['2001:db8:7::7', 'up0'],
    ];
    const questions = [
      ...destinations.flatMap((dst) => [...local.map((src) => [dst, 'from', src]), ...arriving.map(([src, dev]) => [dst, 'from', src, 'iif', dev])]),
      ...destinations6.flatMap((dst) => [...host.probes6.map((src) => [dst, 'from', src]), ...arriving6.map(([src, dev]) => [dst, 'from', src, 'iif', dev])]),
    ];
    const answers = async () => {
      const out: string[] = [];
      for (const question of questions) {
        const family = question[0]!.includes(':') ? '-6' : '-4';
        const answer = await lab.ip(ns, '-N', '-json', family, 'route', 'get', ...question).catch((e: { stderr: string }) => `error: ${e.stderr.trim()}`);
        out.push(`${question.join(' ')} → ${answer.trim()}`);
      }
      return out;
    };
    const withSkips = await answers();
    // Lookups that follow the foreign rules, so the comparison can tell something apart.
    expect(withSkips).toContainEqual(expect.stringMatching(/^198\.51\.100\.70 from 198\.18\.200\.1 → .*"table":"500"/));
    expect(withSkips).toContainEqual(expect.stringMatching(/^198\.51\.100\.130 from 198\.18\.0\.17 → .*"table":"501"/));
    expect(withSkips).toContainEqual(expect.stringMatching(/^198\.19\.0\.1 from 198\.51\.100\.2 → .*"dev":"cali0"/));
    expect(withSkips).toContainEqual(expect.stringMatching(/^198\.19\.0\.2 from 198\.51\.100\.2 → .*"table":"500"/));
    // A managed source whose own table has no route there goes on to the foreign rule after symroute's.
    expect(withSkips).toContainEqual(expect.stringMatching(/^198\.51\.100\.70 from 198\.18\.0\.10 → .*"table":"500"/));

    // The layout before the skips: every skip rule deleted by hand, and the `from` rules
    // back at rule.priority (where the tree had moved them), one by one.
    const skipPriorities = new Set(owned.filter(isSkip).map((r) => `${r.priority}`));
    const fromPriorities = new Set(fromRules.map((r) => `${r.priority}`));
    for (const family of ['-4', '-6']) {
      for (const priority of [...skipPriorities, ...fromPriorities]) {
        // One rule per delete, until none is left at that priority.
        while (await lab.ip(ns, family, 'rule', 'del', 'pref', priority, 'proto', '83').then(() => true, () => false));
      }
    }
    for (const family of [4, 6]) {
      const flat = fromRules
        .filter((r) => r.src!.includes(':') === (family === 6))
        .map((r) => `rule add from ${r.src}${r.srclen === undefined ? '' : `/${r.srclen}`} lookup ${r.table} pref 30000 proto 83`);
      await lab.ip(ns, `-${family}`, '-batch', lab.writeConfig(`${flat.join('\n')}\n`, `flat${family}.batch`));
    }
    const left = [...(await lab.ownedRules(ns, 4)), ...(await lab.ownedRules(ns, 6))];
    expect(left.filter(isSkip)).toEqual([]);
    expect(left.filter(isFromRule).map((r) => r.priority)).toEqual(fromRules.map(() => 30000));
    expect(await answers()).toEqual(withSkips);
  });
});
