// Where the time goes: a V8 .cpuprofile (node --cpu-prof) reduced to self time per function
// and per source file, idle left out, so BENCHMARKS.md can say what a busy daemon spends its
// CPU on.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number; // µs, CLOCK_MONOTONIC (process.hrtime's clock)
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfileSummary {
  /** CPU time sampled outside "(idle)", ms. */
  readonly busyMs: number;
  readonly byFunction: readonly ProfileEntry[];
  readonly byFile: readonly ProfileEntry[];
}

/** Self time per profile node (µs), of the samples taken at or after `sinceUs` (monotonic µs). */
function selfTimes(profile: CpuProfile, sinceUs: number): Map<number, number> {
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= sinceUs) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  return selfUs;
}

/** `since`: only samples taken at or after this process.hrtime.bigint() (the whole run by default). */
export function summariseProfile(path: string, repo: string, top = 15, since = 0n): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = selfTimes(profile, Number(since / 1000n));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    busyUs += us;
    const file = fileOf(url, repo) ?? functionName; // (program), (garbage collector)
    const fn = url ? `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}` : functionName;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  const entries = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name: shorten(name), ms: us / 1000, share: us / busyUs }));
  return { busyMs: busyUs / 1000, byFunction: entries(byFunction), byFile: entries(byFile) };
}

/** V8 names a regular expression's code after its whole source (node:net's isIPv6 is ~1 KiB). */
const shorten = (name: string): string => (name.length > 80 ? `${name.slice(0, 77)}…` : name);

/** dist/… and node_modules/<package>/… relative to the repository; node:… as is. */
function fileOf(url: string, repo: string): string | undefined {
  if (!url) return undefined;
  if (!url.startsWith('file://')) return url;
  const path = relative(repo, new URL(url).pathname);
  const inModules = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  return inModules ? `node_modules/${inModules[1]}` : path;
}

export function markdownProfile(summary: ProfileSummary): string {
  const table = (title: string, entries: readonly ProfileEntry[]) =>
    [
      `| ${title} | self ms | share |`,
      '|---|---|---|',
      ...entries.map((e) => `| \`${e.name}\` | ${e.ms.toFixed(1)} | ${(e.share * 100).toFixed(1)} % |`),
    ].join('\n');
  return `${table('file (self time)', summary.byFile)}\n\n${table('function (self time)', summary.byFunction)}`;
}

/**
 * Inclusive time (ms) under each of `functions` (names as V8 records them), counted once
 * where they nest in themselves, of the samples taken at or after `since` (process.hrtime).
 */
export function inclusiveTimes(path: string, functions: readonly string[], since = 0n): Record<string, number> {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const selfUs = selfTimes(profile, Number(since / 1000n));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals: Record<string, number> = Object.fromEntries(functions.map((name) => [name, 0]));
  const walk = (id: number, inside: ReadonlySet<string>): void => {
    const node = nodes.get(id)!;
    const name = node.callFrame.functionName;
    const now = functions.includes(name) && !inside.has(name) ? new Set([...inside, name]) : inside;
    for (const counted of now) totals[counted]! += selfUs.get(id) ?? 0;
    for (const child of node.children ?? []) walk(child, now);
  };
  walk(profile.nodes[0]!.id, new Set());
  for (const name of functions) totals[name]! /= 1000;
  return totals;
}

/** The call tree under `functionName` (merged by callee name), inclusive ms, down to `minMs`. */
export function callTree(path: string, functionName: string, since = 0n, minMs = 0.5): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const selfUs = selfTimes(profile, Number(since / 1000n));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const inclusive = new Map<number, number>();
  const total = (id: number): number => {
    const node = nodes.get(id)!;
    const us = (selfUs.get(id) ?? 0) + (node.children ?? []).reduce((sum, child) => sum + total(child), 0);
    inclusive.set(id, us);
    return us;
  };
  total(profile.nodes[0]!.id);
  interface Merged { us: number; children: Map<string, Merged> }
  const root: Merged = { us: 0, children: new Map() };
  const label = (node: ProfileNode) => `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.split('/').slice(-2).join('/')}:${node.callFrame.lineNumber + 1}`;
  const merge = (into: Merged, id: number) => {
    const node = nodes.get(id)!;
    const key = label(node);
    let child = into.children.get(key);
    if (!child) into.children.set(key, (child = { us: 0, children: new Map() }));
    child.us += inclusive.get(id)!;
    for (const c of node.children ?? []) merge(child, c);
  };
  const find = (id: number) => {
    const node = nodes.get(id)!;
    if (node.callFrame.functionName === functionName) return merge(root, id);
    for (const c of node.children ?? []) find(c);
  };
  find(profile.nodes[0]!.id);
  const lines: string[] = [];
  const print = (m: Merged, depth: number) => {
    for (const [key, child] of [...m.children].sort((a, b) => b[1].us - a[1].us)) {
      if (child.us / 1000 < minMs) continue;
      lines.push(`${'  '.repeat(depth)}${(child.us / 1000).toFixed(1)} ms  ${key}`);
      print(child, depth + 1);
    }
  };
  print(root, 0);
  return lines.join('\n');
}
