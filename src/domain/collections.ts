// Maps of sets, maps of maps and counts, kept without empty entries: an index entry that is
// gone is absent, never an empty collection or a zero.

/** Groups items by key (one pass, no copying). */
export function groupBy<K, V>(items: Iterable<V>, keyOf: (item: V) => K): Map<K, V[]> {
  const groups = new Map<K, V[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

export function setAdd<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set) set.add(value);
  else map.set(key, new Set([value]));
}

export function setDelete<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

/** Sets `inner` → `value` in the map at `key`. */
export function mapSet<K, I, V>(map: Map<K, Map<I, V>>, key: K, inner: I, value: V): void {
  const entries = map.get(key);
  if (entries) entries.set(inner, value);
  else map.set(key, new Map([[inner, value]]));
}

export function mapDelete<K, I, V>(map: Map<K, Map<I, V>>, key: K, inner: I): void {
  const entries = map.get(key);
  if (!entries) return;
  entries.delete(inner);
  if (entries.size === 0) map.delete(key);
}

/** Adds `delta` to the count at `key`. */
export function bump<K>(counts: Map<K, number>, key: K, delta: number): void {
  const count = (counts.get(key) ?? 0) + delta;
  if (count === 0) counts.delete(key);
  else counts.set(key, count);
}
