// Where the time goes: a V8 .cpuprofile (node --cpu-prof) reduced to self time per function
// and per source file, idle left out, so BENCHMARKS.md can say what a busy daemon spends its
// CPU on.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
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

export function summariseProfile(path: string, repo: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
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
