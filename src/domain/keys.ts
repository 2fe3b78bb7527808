// The identity of the kernel's objects: each key is its own type, made by the one encoder
// below. Keys are compared and looked up, never parsed back: whoever needs a key's parts
// keeps the object it was made from.
import type { Family } from '../net/ip.js';
import type { Address, Nexthop, Route, Rule } from './model.js';

declare const kind: unique symbol;
/** Text only its encoder makes: a RouteKey is not a RuleKey, nor any other string. */
type Key<Kind extends string> = string & { readonly [kind]: Kind };

export type AddressKey = Key<'address'>;
export type RouteSlot = Key<'route slot'>;
export type RouteKey = Key<'route'>;
export type RuleKey = Key<'rule'>;
/** A rule's or a route's key: what a change is about. */
export type ObjectKey = RouteKey | RuleKey;
/** The source a rule is for (family and prefix): one rule per source is elected. */
export type RuleSource = Key<'rule source'>;

export const addressKey = (a: Address): AddressKey => `${a.family}|${a.ifindex}|${a.address}/${a.prefixLength}` as AddressKey;

/**
 * A route "slot": what the kernel treats as the same route for NLM_F_EXCL / NLM_F_REPLACE
 * (family, table, destination, metric; symroute never sets tos). Two routes in one slot
 * cannot coexist without NLM_F_APPEND.
 */
export const routeSlot = (r: Route): RouteSlot => remembered(slots, r, slotOf);

/**
 * A route's or rule's key, made once per object: the objects never change, and the diff, the
 * mirror and the drift ledger ask for the same one several times a pass; the same string each
 * time is also hashed only once by the maps it is looked up in.
 */
export const routeKey = (r: Route): RouteKey => remembered(routeKeys, r, routeKeyOf);

export const ruleKey = (r: Rule): RuleKey => remembered(ruleKeys, r, ruleKeyOf);

const slots = new WeakMap<Route, RouteSlot>();
const routeKeys = new WeakMap<Route, RouteKey>();
const ruleKeys = new WeakMap<Rule, RuleKey>();

function remembered<T extends object, K>(keys: WeakMap<T, K>, object: T, make: (object: T) => K): K {
  let key = keys.get(object);
  if (key === undefined) keys.set(object, (key = make(object)));
  return key;
}

const slotOf = (r: Route): RouteSlot => `${r.family}|${r.table}|${r.dst}/${r.dstLength}|${r.src ?? ''}/${r.srcLength ?? 0}|${r.metric}` as RouteSlot;

// Template strings rather than an array joined: the array, its join and the nexthops' map
// and sort were most of a key's cost.
const routeKeyOf = (r: Route): RouteKey =>
  `${routeSlot(r)}|${r.protocol}|${r.scope}|${r.type}|${r.oif ?? ''}|${r.gateway ?? ''}|${r.onlink ? 'onlink' : ''}|${r.prefsrc ?? ''}|${r.nexthops ? nexthopsKey(r.nexthops) : ''}` as RouteKey;

/** The kernel lists nexthops in different orders in different messages. */
const nexthopsKey = (nexthops: readonly Nexthop[]): string =>
  nexthops
    .map((n) => `${n.ifindex}@${n.gateway ?? ''}`)
    .sort()
    .join(',');

const ruleKeyOf = (r: Rule): RuleKey =>
  `${r.family}|${r.priority}|${r.table}|${r.action}|${r.goto ?? ''}|${r.protocol}|${r.src ?? ''}/${r.srcLength}|${r.dst ?? ''}/${r.dstLength}|${r.iifname ?? ''}|${r.oifname ?? ''}|${r.fwmark ?? ''}|${r.tos}` as RuleKey;

export const ruleSource = (rule: Rule): RuleSource => `${rule.family}|${rule.src}/${rule.srcLength}` as RuleSource;

/** Objects of one owner (protocol number) and family, counted together. */
export const ownerKey = (protocol: number, family: Family): number => protocol * 8 + family;
