// Fast start: each command loads only the modules it uses, so `symroute --help` costs little
// more than starting Node.js. Judged by the module loader itself (a load hook lists every
// module it is asked for), which is a list, not a time.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../support/lab.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'symroute-imports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let runs = 0;

/** The modules `symroute <args>` loaded: dist/… files and node_modules packages, in order. */
async function modulesLoadedBy(args: string[]): Promise<string[]> {
  const file = join(dir, `trace-${++runs}`);
  await run(process.execPath, ['--import', join(REPO, 'test/support/trace-imports.mjs'), join(REPO, 'dist/cli.js'), ...args], {
    env: { ...process.env, TRACE_IMPORTS_FILE: file },
  }).catch((error: { code?: number }) => {
    if (typeof error.code !== 'number') throw error; // a non-zero exit is an answer, not a failure here
  });
  const names = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((url) => {
      const path = new URL(url).pathname.slice(REPO.length + 1);
      return /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1] ?? path;
    });
  return [...new Set(names)];
}

const RUNTIME = ['pino', 'prom-client', 'node-addon-api', 'dist/netlink', 'dist/service', 'dist/daemon', 'dist/control', 'dist/kernel'];

describe('module loading per command', () => {
  it('--help and --version load nothing but the command line itself', async () => {
    for (const args of [['--help'], ['--version'], ['run', '--help'], ['plan', '--help']]) {
      const loaded = await modulesLoadedBy(args);
      expect(loaded, args.join(' ')).toContain('dist/cli.js');
      expect(loaded.filter((name) => !name.startsWith('dist/')), args.join(' ')).toEqual([]);
      expect(loaded.filter((name) => /config\.js$|service|commands|netlink/.test(name)), args.join(' ')).toEqual([]);
    }
  });

  it('check-config loads the config parser but nothing of the daemon', async () => {
    const loaded = await modulesLoadedBy(['check-config', join(dir, 'missing.yaml')]);
    expect(loaded).toEqual(expect.arrayContaining(['zod', 'yaml']));
    expect(loaded.filter((name) => RUNTIME.some((r) => name.startsWith(r)))).toEqual([]);
  });
});
