// The reply-path verifier's bookkeeping, with the lookups scripted: which verdicts a pass
// that ran meanwhile makes stale, and that a sweep outlasting the time between events ends.
import { describe, expect, it } from 'vitest';
import { ReplyPathVerifier, touchedNics, type VerifierObserver } from '../../src/control/verifier.js';
import { FR_ACT_GOTO, FR_ACT_NOP, RT_TABLE_MAIN } from '../../src/domain/constants.js';
import type { KernelEvent } from '../../src/domain/events.js';
import type { PathVerdict } from '../../src/domain/reply-paths.js';
import { route, rule } from '../support/builders.js';

const verdict = (ifindex: number): PathVerdict => ({
  probe: { direction: 'egress', family: 4, ifindex, ifname: `eth${ifindex}`, address: `198.18.${ifindex}.10`, peer: `198.18.${ifindex}.1`, offLink: false },
  failure: null,
});

/** A verifier over NICs 2..n, whose lookups resolve when the test says, and whose state the test moves. */
function harness(nics: number[]) {
  const asked: Array<number[] | 'all'> = [];
  const answers: Array<() => void> = [];
  const recorded: string[] = [];
  const state = { version: 0, current: true };
  const observer: VerifierObserver = {
    replyPathBroke: () => undefined,
    replyPathHealed: () => undefined,
    replyPathsOfNic: (ifname, _family, ok) => void recorded.push(`${ifname} ${ok}`),
    verifyFailed: (error) => {
      throw error;
    },
  };
  const verifier = new ReplyPathVerifier(
    {
      current: () => state.current,
      verify: (only) => {
        const which = only ? [...only].sort() : nics;
        asked.push(only ? [...only].sort() : 'all');
        return new Promise((resolve) => answers.push(() => resolve(which.map(verdict))));
      },
      stateVersion: () => String(state.version),
    },
    observer,
  );
  const answer = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    answers.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { verifier, asked, recorded, state, answer };
}

describe('reply-path verifier', () => {
  it('keeps what a sweep saw of the NICs a pass meanwhile did not touch, and verifies the touched ones again', async () => {
    const h = harness([2, 3, 4]);
    h.verifier.request('all');
    await new Promise((resolve) => setImmediate(resolve));
    expect(h.asked).toEqual(['all']);
    // While the sweep's lookups are out, a pass runs for eth3 and asks for it.
    h.state.version++;
    h.verifier.request([3]);
    await h.answer();
    expect(h.recorded.sort()).toEqual(['eth2 true', 'eth4 true']);
    expect(h.asked).toEqual(['all', [3]]);
    await h.answer();
    expect(h.recorded.sort()).toEqual(['eth2 true', 'eth3 true', 'eth4 true']);
    await h.verifier.idle();
  });

  it('holds its lookups between turns while a pass is due or running, and goes on once a pass has ended', async () => {
    const turns: string[] = [];
    const state = { current: true };
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const verifier = new ReplyPathVerifier(
      {
        current: () => state.current,
        verify: async (only, between) => {
          turns.push('first');
          await between();
          turns.push('second');
          return (only ? [...only] : [2]).map(verdict);
        },
        stateVersion: () => 'same',
      },
      { replyPathBroke: () => undefined, replyPathHealed: () => undefined, replyPathsOfNic: () => undefined, verifyFailed: (error) => { throw error; } },
    );
    verifier.request('all');
    await turn();
    state.current = false; // an event came: a pass is due
    for (let i = 0; i < 5; i++) await turn();
    expect(turns).toEqual(['first']);
    verifier.request([2]); // the pass's end, while its scheduler is still busy
    for (let i = 0; i < 3; i++) await turn();
    expect(turns).toEqual(['first']);
    state.current = true;
    verifier.request([2]); // the next pass's end; its scheduler is idle a turn later
    await verifier.idle();
    // Then the NIC the passes touched, verified again.
    expect(turns).toEqual(['first', 'second', 'first', 'second']);
    // Stopping lets held lookups end.
    verifier.request('all');
    await turn();
    state.current = false;
    for (let i = 0; i < 3; i++) await turn();
    expect(turns).toHaveLength(5);
    verifier.stop();
    await verifier.idle();
    expect(turns).toHaveLength(6);
  });

  it('finishes a sweep while events keep coming, each touching one NIC', async () => {
    const h = harness([2, 3, 4, 5]);
    h.verifier.request('all');
    await new Promise((resolve) => setImmediate(resolve)); // the sweep's lookups are out
    for (let event = 0; event < 5; event++) {
      h.state.version++;
      h.verifier.request([2 + (event % 4)]);
      await h.answer();
    }
    expect(new Set(h.recorded.map((line) => line.split(' ')[0]))).toEqual(new Set(['eth2', 'eth3', 'eth4', 'eth5']));
    expect(h.asked.filter((asked) => asked === 'all')).toHaveLength(1);
    h.verifier.stop();
    await h.answer().catch(() => undefined);
  });

  it('takes nothing from a verification while a change is still being taken in, and asks again', async () => {
    const h = harness([2, 3]);
    h.verifier.request('all');
    await new Promise((resolve) => setImmediate(resolve));
    h.state.version++;
    h.state.current = false; // a notification read, its pass not run yet
    await h.answer();
    expect(h.recorded).toEqual([]);
    h.state.current = true;
    h.verifier.request([]); // the pass ends, having touched nothing
    await new Promise((resolve) => setImmediate(resolve));
    expect(h.asked).toEqual(['all', 'all']);
    await h.answer();
    expect(h.recorded.sort()).toEqual(['eth2 true', 'eth3 true']);
  });
});

describe('which NICs an event sends to verification', () => {
  // Tables 1002 and 1003 are eth2's and eth3's; symroute's protocol is 83.
  const ownTable = (table: number) => (table === 1002 || table === 1003 ? table - 1000 : undefined);
  const touched = (...events: KernelEvent[]) => {
    const nics = touchedNics(events, 83, ownTable, new Set());
    return nics === 'all' ? 'all' : [...nics].sort();
  };
  const ruleEvent = (spec: Parameters<typeof rule>[0]): KernelEvent => ({ kind: 'rule', op: 'add', rule: rule({ family: 4, ...spec }) });

  it("takes a NIC's own rules and routes to that NIC, and anything of others' to every NIC", () => {
    expect(touched(ruleEvent({ from: '198.18.2.10', table: 1002 }), { kind: 'route', op: 'add', route: route({ dst: '198.18.3.0/24', oif: 3, table: 1003, protocol: 83 }) })).toEqual([2, 3]);
    expect(touched(ruleEvent({ from: '198.18.2.10', table: 500, protocol: 4 }))).toBe('all');
    expect(touched({ kind: 'route', op: 'add', route: route({ dst: '0.0.0.0/0', gateway: '198.18.2.1', oif: 2, table: 500 }) })).toBe('all');
    // A rule of symroute's into a table no NIC has any more (the NIC is gone): every NIC.
    expect(touched(ruleEvent({ from: '198.18.4.10', table: 1004 }))).toBe('all');
  });

  it("sends none for symroute's rules into no NIC's table: skip gotos, their nop, to … lookup main", () => {
    expect(
      touched(
        ruleEvent({ from: '198.18.0.0/16', priority: 29998, action: FR_ACT_GOTO, goto: 30000, table: 0 }),
        ruleEvent({ priority: 29999, action: FR_ACT_GOTO, goto: 30001, table: 0 }),
        ruleEvent({ priority: 30001, action: FR_ACT_NOP, table: 0 }),
        ruleEvent({ priority: 29997, dst: '203.0.113.0', dstLength: 24, table: RT_TABLE_MAIN }),
      ),
    ).toEqual([]);
  });
});

