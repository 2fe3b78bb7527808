// Stock distributions' roots for the package tests: built from Debian's archive with
// mmdebstrap (nothing third-party: no Node.js repository, so no nodejs at all), once per
// machine, into a cache dir outside the repository (SYMROUTE_TEST_CACHE, default
// /var/cache/symroute-test). Tests boot them with systemd-nspawn --volatile=overlay, so the
// cached root itself never changes; the machine's own root is not touched either.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const TEST_CACHE = process.env.SYMROUTE_TEST_CACHE ?? '/var/cache/symroute-test';
const MIRROR = process.env.SYMROUTE_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const SECURITY = process.env.SYMROUTE_DEBIAN_SECURITY_MIRROR ?? 'http://deb.debian.org/debian-security';

/**
 * Debian 12 as its installer's minimal system leaves it: the required and important-for-apt
 * packages (mmdebstrap's minbase) plus systemd as init, from bookworm, bookworm-updates and
 * bookworm-security. Built when missing; the path of its directory.
 */
export async function stockDebian12(): Promise<string> {
  const args = [
    '--variant=minbase',
    '--include=systemd,systemd-sysv',
    'bookworm',
    `deb ${MIRROR} bookworm main`,
    `deb ${MIRROR} bookworm-updates main`,
    `deb ${SECURITY} bookworm-security main`,
  ];
  // The recipe names the root: a changed recipe builds a new one.
  const dir = join(TEST_CACHE, `debian-12-amd64-${createHash('sha256').update(args.join('\n')).digest('hex').slice(0, 12)}`);
  if (existsSync(dir)) return dir;
  mkdirSync(TEST_CACHE, { recursive: true });
  // Under a lock, into a scratch name first: a root half built (or being built) is never used.
  const build = ['set -e', 'DIR=$1', 'shift', 'if test -d "$DIR"; then exit 0; fi', 'rm -rf "$DIR.build"', 'mmdebstrap --quiet "$@"', 'mv "$DIR.build" "$DIR"'];
  const [variant, include, suite, ...sources] = args;
  await run('flock', [join(TEST_CACHE, 'lock'), 'sh', '-c', build.join('\n'), 'build', dir, variant!, include!, suite!, `${dir}.build`, ...sources], {
    timeout: 600_000,
  });
  return dir;
}
