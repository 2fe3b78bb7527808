// The npm package as a user gets it: `npm pack` of this checkout (in a copy, since prepack
// rebuilds dist/ from scratch and other tests use this one), installed globally into a temp
// prefix with a strict npm, which must build the addon and give a working `symroute`; and
// `npm ci --omit=dev` on a fresh checkout, which must succeed without the TypeScript compiler.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';

const run = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

async function sh(command: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('the npm package', () => {
  const dir = mkdtempSync(join(tmpdir(), 'symroute-npm-'));
  const lab = new Lab();
  let tarball: string;

  beforeAll(async () => {
    // A copy of the checkout's tracked files, with this checkout's dev dependencies.
    const source = join(dir, 'source');
    const { stdout } = await run('git', ['ls-files', '-z'], { cwd: REPO, maxBuffer: 16 * 1024 * 1024 });
    for (const file of stdout.split('\0').filter(Boolean)) {
      if (!existsSync(join(REPO, file))) continue; // deleted in the working tree
      mkdirSync(dirname(join(source, file)), { recursive: true });
      cpSync(join(REPO, file), join(source, file));
    }
    symlinkSync(join(REPO, 'node_modules'), join(source, 'node_modules'));
    const pack = await sh('npm', ['pack', '--pack-destination', dir], source);
    expect(pack.code, pack.stderr).toBe(0);
    tarball = join(dir, `symroute-${VERSION}.tgz`);
  }, 300_000);

  afterAll(async () => {
    await lab.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('holds what running and building need, and nothing of the repository besides', async () => {
    const { stdout } = await run('tar', ['tzf', tarball]);
    const files = stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    for (const file of ['dist/cli.js', 'dist/manual.js', 'native/netlink_socket.cc', 'binding.gyp', 'man/symroute.8', 'man/symroute.yaml.5', 'systemd/symroute.service', 'package.json', 'README.md']) {
      expect(files, file).toContain(file);
    }
    expect(files.filter((f) => /^(src|test|\.ci|deploy|scripts|packaging|node_modules|build)\//.test(f))).toEqual([]);
  });

  it('installs globally with a strict npm once its install script is allowed, and runs', async () => {
    const prefix = join(dir, 'prefix');
    mkdirSync(join(prefix, 'lib'), { recursive: true });
    const install = (...allow: string[]) =>
      sh('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--strict-allow-scripts', ...allow, tarball], dir);
    // Not silently skipped: without the allowance the install fails and says why.
    const refused = await install();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('ESTRICTALLOWSCRIPTS');
    expect(refused.stderr).toContain('node-gyp rebuild');

    const allowed = await install(`--allow-scripts=${tarball}`);
    expect(allowed.code, allowed.stderr).toBe(0);
    const installed = join(prefix, 'lib/node_modules/symroute');
    expect(existsSync(join(installed, 'build/Release/symroute_native.node'))).toBe(true);
    expect(existsSync(join(prefix, 'share/man/man8/symroute.8'))).toBe(true);
    const symroute = join(prefix, 'bin/symroute');
    expect((await sh(symroute, ['--version'], dir)).stdout.trim()).toBe(VERSION);

    // The addon works: converge a namespace once.
    const ns = await lab.namespace('n');
    await lab.veth(ns, 'e1', ns, 'e2');
    await lab.ip(ns, 'addr', 'add', '198.18.7.10/24', 'dev', 'e1');
    const once = await sh('ip', ['netns', 'exec', ns, symroute, 'run', '--once', '--config', lab.writeConfig('')], dir);
    expect(once.code, once.stdout + once.stderr).toBe(0);
    expect((await lab.ownedRules(ns)).map((r) => r.src)).toEqual(['198.18.7.10']);
  }, 300_000);

  it('`npm ci --omit=dev` succeeds on a fresh checkout, saying dist/ needs the dev dependencies', async () => {
    const checkout = join(dir, 'checkout');
    mkdirSync(checkout);
    const archive = join(dir, 'head.tar');
    await run('git', ['archive', '--output', archive, 'HEAD'], { cwd: REPO });
    await run('tar', ['xf', archive, '-C', checkout]);
    const ci = await sh('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], checkout);
    expect(ci.code, ci.stderr).toBe(0);
    expect(ci.stderr).toContain('TypeScript is not installed (--omit=dev)');
    expect(existsSync(join(checkout, 'build/Release/symroute_native.node'))).toBe(true);
    expect(existsSync(join(checkout, 'node_modules/typescript'))).toBe(false);
  }, 300_000);
});
