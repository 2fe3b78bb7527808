// Table ids and rule priorities that foreign objects already use, found up front, each with
// a free alternative to put in the config. Pure: reads the mirror only.
import type { Config } from '../config/config.js';
import type { MirrorView } from './mirror.js';
import { describeRule, type Rule } from './model.js';
import { priorityRange } from './rule-skips.js';

// rule.priority's range (config.ts): P-5 after the local table's 0, the tree's landing
// (P+162) before main's 32766.
const MIN_PRIORITY = 6;
const MAX_PRIORITY = 32603;
const SHOWN = 3;

/** The priorities symroute's rules use (rule-skips.ts): from P-5 to P+162 for rule.priority P, tree or not. */
function ownPriorities(priority: number): number[] {
  const { first, last } = priorityRange(priority);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/** Rules symroute does not own at the priorities it would use: a refusal, with a free priority. */
export function priorityCollision(config: Config, mirror: MirrorView): string | undefined {
  const foreign = [...mirror.rules.values()].map(({ rule }) => rule).filter((rule) => rule.protocol !== config.protocol);
  const own = new Set(ownPriorities(config.rule.priority));
  const clashing = foreign.filter((rule) => own.has(rule.priority));
  if (clashing.length === 0) return undefined;
  const used = new Set(foreign.map((rule) => rule.priority));
  const free = nearestFreePriority(config, used);
  const { first, last } = priorityRange(config.rule.priority);
  return (
    `rule.priority: ${config.rule.priority} (symroute's rules take ${first}..${last}) already hold${clashing.length === 1 ? 's' : ''} ` +
    `rules symroute does not own: ${listRules(clashing)}; ` +
    (free === undefined ? 'no free priority found' : `choose a free one, such as rule.priority: ${free}`)
  );
}

function nearestFreePriority(config: Config, used: ReadonlySet<number>): number | undefined {
  const isFree = (priority: number) => ownPriorities(priority).every((p) => !used.has(p) && p >= 1 && p < 32766);
  for (let distance = 1; distance <= MAX_PRIORITY; distance++) {
    for (const candidate of [config.rule.priority - distance, config.rule.priority + distance]) {
      if (candidate >= MIN_PRIORITY && candidate <= MAX_PRIORITY && isFree(candidate)) return candidate;
    }
  }
  return undefined;
}

function listRules(rules: readonly Rule[]): string {
  const texts = rules.map((rule) => `${describeRule(rule)} proto ${rule.protocol}`).sort();
  const more = texts.length - SHOWN;
  return texts.slice(0, SHOWN).join(', ') + (more > 0 ? ` and ${more} more` : '');
}

/**
 * A `table.base` under which no managed interface's table (base + ifindex) holds a foreign
 * route: the next multiple of 1000 above the current base that is clear, if any.
 */
export function freeTableBase(config: Config, ifindexes: readonly number[], foreignTables: ReadonlySet<number>): number | undefined {
  const maxBase = 0xffff_ffff - 65536;
  for (let base = (Math.floor(config.table.base / 1000) + 1) * 1000; base <= maxBase; base += 1000) {
    if (ifindexes.every((ifindex) => !foreignTables.has(base + ifindex))) return base;
  }
  return undefined;
}

/** The lowest table id at or above table.base that nothing uses and no other interface would. */
export function freeTableId(config: Config, ifindexes: readonly number[], usedTables: ReadonlySet<number>): number {
  const planned = new Set(ifindexes.map((ifindex) => config.table.base + ifindex));
  const pinned = new Set(Object.values(config.table.pinned));
  let id = config.table.base;
  while (usedTables.has(id) || planned.has(id) || pinned.has(id)) id++;
  return id;
}
