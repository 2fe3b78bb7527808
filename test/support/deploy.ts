// The deployment files as data, for the tests that hold them to what the daemon does:
// the Dockerfile's exec-form ENTRYPOINT/CMD, the Kubernetes manifests a kustomization
// lists, and a ConfigMap volume written the way the kubelet writes one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO } from './lab.js';

export const KUBERNETES = join(REPO, 'deploy/kubernetes');

/** A JSON-array (exec form) instruction of the Dockerfile's last stage, e.g. ENTRYPOINT. */
export function dockerfileExec(instruction: 'ENTRYPOINT' | 'CMD'): string[] {
  const lines = readFileSync(join(REPO, 'Dockerfile'), 'utf8').split('\n');
  const lastStage = lines.map((line) => /^FROM\s/i.test(line)).lastIndexOf(true);
  const line = lines.slice(lastStage).find((l) => l.startsWith(`${instruction} `));
  if (!line) throw new Error(`Dockerfile: no ${instruction} in the last stage`);
  const argv = JSON.parse(line.slice(instruction.length + 1)) as unknown;
  if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) throw new Error(`Dockerfile: ${instruction} is not in exec form`);
  return argv;
}

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

/** Every object a kustomization directory lists (following resources that are directories). */
export function kustomize(directory: string): Manifest[] {
  const kustomization = parseYaml(join(directory, 'kustomization.yaml'))[0] as { resources: string[] };
  return kustomization.resources.flatMap((resource) => {
    const path = join(directory, resource);
    return existsSync(join(path, 'kustomization.yaml')) ? kustomize(path) : (parseYaml(path) as Manifest[]);
  });
}

export function parseYaml(path: string): unknown[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]!.message}`);
    return doc.toJS() as unknown;
  });
}

export function findManifest<T = Manifest>(manifests: Manifest[], kind: string): T {
  const found = manifests.filter((m) => m.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0] as T;
}

/** The kubernetes-models interface of a kind: the module that exports it and its name. */
export interface ModelType {
  module: string;
  name: string;
}

/**
 * Fields no schema knows: the generated validators pass a misspelt `readinesProbe`, as the
 * schemas allow any field they do not list. Here each manifest, as a JSON object literal
 * typed with its kubernetes-models interface (generated from the same schemas), goes through
 * tsc, whose excess-property check names every unknown field at any depth (and whose type
 * check names a wrong type). Returns tsc's messages, each naming the manifest; none when all pass.
 */
export function manifestTypeErrors(manifests: Array<{ manifest: Manifest; type: ModelType }>): string[] {
  // Inside the repository, so tsc resolves the packages from its node_modules.
  const cache = join(REPO, 'node_modules/.cache');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(join(cache, 'symroute-manifest-types-'));
  try {
    const lines = manifests.map(({ type }, k) => `import type { ${type.name} as T${k} } from '${type.module}';`);
    const starts: Array<{ line: number; label: string }> = [];
    for (const [k, { manifest }] of manifests.entries()) {
      starts.push({ line: lines.length + 1, label: `${manifest.kind} ${manifest.metadata.name}` });
      lines.push(...`export const m${k}: T${k} = ${JSON.stringify(manifest, null, 2)};`.split('\n'));
    }
    const file = join(dir, 'manifests.ts');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const tsc = spawnSync(
      process.execPath,
      [join(REPO, 'node_modules/typescript/bin/tsc'), '--ignoreConfig', '--noEmit', '--strict', '--module', 'nodenext', '--skipLibCheck', file],
      { encoding: 'utf8' },
    );
    if (tsc.error) throw tsc.error;
    const messages = tsc.stdout.split('\n').filter(Boolean);
    if (tsc.status !== 0 && messages.length === 0) throw new Error(`tsc exited ${tsc.status}: ${tsc.stderr}`);
    // `…/manifests.ts(12,5): error TS2561: …` becomes `DaemonSet symroute, line 3: error TS2561: …`.
    return messages.map((message) => {
      const at = /^.*manifests\.ts\((\d+),\d+\): (.*)$/.exec(message);
      if (!at) return message;
      const line = Number(at[1]);
      const start = starts.filter((s) => s.line <= line).at(-1);
      return start ? `${start.label}, line ${line - start.line + 1}: ${at[2]}` : at[2]!;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A ConfigMap volume as the kubelet's AtomicWriter keeps it: the data in a timestamped
 * directory, `..data` a symlink to it, each key a symlink through `..data`. An update
 * writes a new directory, points `..data_tmp` at it, renames that over `..data` (the one
 * atomic step), then removes the old directory.
 */
export class ConfigMapVolume {
  private generation = 0;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  write(key: string, text: string): string {
    const data = `..2026_11_29_12_00_00.${++this.generation}`;
    mkdirSync(join(this.dir, data));
    writeFileSync(join(this.dir, data, key), text);
    const link = join(this.dir, '..data');
    const old = existsSync(link) ? readlinkSync(link) : null;
    symlinkSync(data, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), link);
    if (!existsSync(join(this.dir, key))) symlinkSync(join('..data', key), join(this.dir, key));
    if (old) rmSync(join(this.dir, old), { recursive: true });
    return join(this.dir, key);
  }
}


