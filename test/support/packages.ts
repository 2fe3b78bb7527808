// The .debs and .rpms the package tests judge, built once by packaging/build.sh for both
// architectures (light compression: SYMROUTE_PKG_FAST) plus a rebuilt amd64 .deb to upgrade
// to. Several test files need them, in separate workers: the first builds under a lock, the
// others wait and reuse. The cache dir is keyed by the content of everything that goes into
// a package, so a run after a change builds afresh and an unchanged tree builds only once.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './lab.js';

const run = promisify(execFile);
const CACHE = join(tmpdir(), 'symroute-test-packages');
const INPUTS = ['dist', 'packaging', 'native', 'binding.gyp', 'package.json', 'package-lock.json', 'systemd/symroute.service'];

export const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
export const UPGRADE_VERSION = `${VERSION}+rebuild1`;

export interface Packages {
  deb: { amd64: string; arm64: string };
  rpm: { x86_64: string; aarch64: string };
  /** The amd64 .deb again, as UPGRADE_VERSION. */
  upgradeDeb: string;
}

function files(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((name) => files(join(path, name)));
}

function inputsKey(): string {
  const hash = createHash('sha256');
  for (const file of INPUTS.flatMap((input) => files(join(REPO, input)))) {
    hash.update(relative(REPO, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Builds (or finds, already built from the same inputs) every package the tests need. */
export async function builtPackages(): Promise<Packages> {
  const dir = join(CACHE, inputsKey());
  const packages: Packages = {
    deb: { amd64: join(dir, `symroute_${VERSION}_amd64.deb`), arm64: join(dir, `symroute_${VERSION}_arm64.deb`) },
    rpm: { x86_64: join(dir, `symroute-${VERSION}-1.x86_64.rpm`), aarch64: join(dir, `symroute-${VERSION}-1.aarch64.rpm`) },
    upgradeDeb: join(dir, `symroute_${UPGRADE_VERSION}_amd64.deb`),
  };
  if (existsSync(dir)) return packages;
  mkdirSync(CACHE, { recursive: true });
  const script = join(REPO, 'packaging/build.sh');
  // flock: one build at a time; whoever gets the lock second finds the first one's result.
  // Builds from other trees' contents, unused for an hour, are removed.
  const build = [
    'set -e',
    'if test -d "$1"; then exit 0; fi',
    'find "$(dirname "$1")" -mindepth 1 -maxdepth 1 -type d -mmin +60 -exec rm -rf {} +',
    'rm -rf "$1.build"',
    'sh "$2" "$1.build"',
    'SYMROUTE_PKG_VERSION="$3" SYMROUTE_PKG_ARCHES=amd64 SYMROUTE_PKG_FORMATS=deb sh "$2" "$1.build"',
    'mv "$1.build" "$1"',
  ].join('\n');
  await run('flock', [join(CACHE, 'lock'), 'sh', '-c', build, 'build', dir, script, UPGRADE_VERSION], {
    env: { ...process.env, SYMROUTE_PKG_FAST: '1' },
    timeout: 900_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return packages;
}
