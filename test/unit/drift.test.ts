// The drift ledger: only what someone else did to a converged object is drift — not
// symroute's own writes, not what the kernel does by itself when a device goes down.
import { describe, expect, it } from 'vitest';
import { DriftLedger } from '../../src/control/drift.js';
import { desiredOf, type Change } from '../../src/domain/diff.js';
import type { Route, Rule } from '../../src/domain/model.js';
import { MirrorBuilder, PROTO, route, rule } from '../support/builders.js';

const connected = route({ dst: '198.18.0.0/24', oif: 2, table: 1002, protocol: PROTO, scope: 253 });
const gateway = route({ gateway: '198.18.0.1', oif: 2, table: 1002, protocol: PROTO });
const source = rule({ from: '198.18.0.10', table: 1002 });

const desired = (routes: Route[], rules: Rule[]) =>
  desiredOf({ routes, rules, interfaces: [], protectedTables: new Set(), problems: [], sharedSubnets: [] });
const add = (r: Route): Change => ({ op: 'add', kind: 'route', route: r });
const addRule = (r: Rule): Change => ({ op: 'add', kind: 'rule', rule: r });

/** eth0 up, everything converged (and in the mirror). */
function converged() {
  const kernel = new MirrorBuilder().nic(2, 'eth0', '198.18.0.10/24');
  kernel.route(connected);
  kernel.route(gateway);
  kernel.rule(source);
  const ledger = new DriftLedger();
  ledger.converged(desired([connected, gateway], [source]), null);
  return { kernel, ledger, mirror: kernel.mirror };
}

describe('DriftLedger', () => {
  it('counts a converged rule or route deleted by someone else, once', () => {
    const { ledger, mirror } = converged();
    ledger.observe([{ kind: 'rule', op: 'delete', rule: source }, { kind: 'route', op: 'delete', route: gateway }], mirror);
    expect(ledger.isRepair(addRule(source))).toBe(true);
    expect(ledger.isRepair(add(gateway))).toBe(true);
    expect(ledger.isRepair(addRule(source))).toBe(false);
    expect(ledger.isRepair(add(connected))).toBe(false);
  });

  it('does not count the notifications of its own requests', () => {
    const { ledger, mirror } = converged();
    const remove: Change = { op: 'delete', kind: 'rule', rule: source };
    ledger.expect(remove, true);
    ledger.observe([{ kind: 'rule', op: 'delete', rule: source }], mirror);
    expect(ledger.isRepair(addRule(source))).toBe(false);
    // A refused request causes no notification: the next delete is someone else's.
    ledger.expect(remove, true);
    ledger.expect(remove, false);
    ledger.observe([{ kind: 'rule', op: 'delete', rule: source }], mirror);
    expect(ledger.isRepair(addRule(source))).toBe(true);
  });

  it('does not count routes the kernel removed with their device', () => {
    const { ledger, mirror } = converged();
    ledger.observe([{ kind: 'link', op: 'set', link: { ...mirror.links.get(2)!, up: false } }], mirror);
    ledger.observe([{ kind: 'route', op: 'delete', route: gateway }], mirror);
    expect(ledger.isRepair(add(gateway))).toBe(false);
  });

  it('counts a converged route displaced from its slot by a replace', () => {
    const { ledger, mirror } = converged();
    const other = { ...gateway, gateway: '198.18.0.2' };
    ledger.observe([{ kind: 'route', op: 'replace', route: other }], mirror);
    expect(ledger.isRepair(add(gateway))).toBe(true);
    expect(ledger.holds(add(gateway))).toBe(true);
    expect(ledger.holds(add(other))).toBe(false);
  });

  it('finds what a re-dump no longer shows', () => {
    const { kernel, ledger, mirror } = converged();
    kernel.delRule(source);
    ledger.redumped(mirror);
    expect(ledger.isRepair(addRule(source))).toBe(true);
    expect(ledger.isRepair(add(gateway))).toBe(false);
  });

  it('forgets drift at convergence, and converges only the scope looked at', () => {
    const { ledger, mirror } = converged();
    ledger.observe([{ kind: 'rule', op: 'delete', rule: source }], mirror);
    ledger.converged(desired([connected, gateway], []), { tables: new Set(), ruleKeys: new Set() });
    expect(ledger.isRepair(addRule(source))).toBe(false);
    expect(ledger.holds(addRule(source))).toBe(true);
    ledger.converged(desired([], []), { tables: new Set([1002]), ruleKeys: new Set() });
    expect(ledger.holds(add(gateway))).toBe(false);
    expect(ledger.holds(addRule(source))).toBe(true);
  });
});
