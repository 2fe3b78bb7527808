// The .deb end to end, the way an operator meets it: lintian first, then installed with apt
// into a throwaway overlay of this machine (systemd-nspawn with writable overlays over /usr,
// /etc and /var; upper halves in temp dirs) under that machine's own systemd, in a network
// namespace of the test's own. Enabled and started by its maintainer scripts, reloaded,
// upgraded to a rebuilt package while `ip monitor` watches for any rule going away, removed
// and purged. Afterwards nothing outside the overlay has changed.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';
import { Machine } from '../support/machine.js';

const run = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const UPGRADE = `${VERSION}+rebuild1`;
const DEBS = '/srv/symroute-debs';
const CONFIG = '/etc/symroute/symroute.yaml';

/** Builds the .deb from this checkout's dist/ (as `npm run package` does after its build). */
async function buildDeb(outDir: string, version: string): Promise<string> {
  const { stdout } = await run('sh', [join(REPO, 'packaging/build-deb.sh'), outDir], {
    env: { ...process.env, SYMROUTE_DEB_VERSION: version },
    timeout: 300_000,
  });
  return stdout.trim();
}

const hostState = () => ({
  dpkgStatus: createHash('sha256').update(readFileSync('/var/lib/dpkg/status')).digest('hex'),
  lib: existsSync('/usr/lib/symroute'),
  etc: existsSync('/etc/symroute'),
  unit: existsSync('/usr/lib/systemd/system/symroute.service') || existsSync('/etc/systemd/system/multi-user.target.wants/symroute.service'),
});

describe('the .deb', () => {
  const lab = new Lab();
  const out = mkdtempSync(join(tmpdir(), 'symroute-debs-'));
  let debs: { first: string; upgrade: string };
  let machine: Machine | undefined;
  let ns: string;
  let lintian: Promise<{ stdout: string; stderr: string }> | undefined;
  const before = hostState();

  const m = () => machine!;
  const deb = (path: string) => `${DEBS}/${path.slice(out.length + 1)}`;
  const rulesAt = async (priority: number) =>
    (await lab.ownedRules(ns)).filter((r) => r.priority === priority).map((r) => `${r.src} ${r.table}`).sort();
  const apt = (...args: string[]) =>
    m().exec(['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-y', '-o', 'Dpkg::Options::=--force-confold', ...args], 180_000);
  const mainPid = async () => Number(await m().property('symroute', 'MainPID'));

  beforeAll(async () => {
    ns = await lab.namespace('d');
    const peer = await lab.namespace('p');
    for (const [k, nic] of ['e1', 'e2'].entries()) {
      await lab.veth(ns, nic, peer, `p${k + 1}`);
      await lab.ip(ns, 'addr', 'add', `198.18.${k + 1}.10/24`, 'dev', nic);
    }
    const [first, upgrade] = await Promise.all([buildDeb(out, VERSION), buildDeb(out, UPGRADE)]);
    debs = { first: first!, upgrade: upgrade! };
    // lintian takes a while: it runs alongside the install tests and is judged after them.
    lintian = run('lintian', ['--tag-display-limit', '0', debs.first], { timeout: 300_000 });
    lintian.catch(() => undefined); // judged in its test
    machine = await Machine.boot({
      name: `symroute-deb-${process.pid}`,
      netns: ns,
      overlays: ['/usr', '/etc', '/var'],
      binds: { [out]: DEBS },
    });
  }, 600_000);

  afterAll(async () => {
    await machine?.shutdown();
    await lab.cleanup();
    rmSync(out, { recursive: true, force: true });
  }, 60_000);

  it('ships the daemon with production dependencies only, a stripped addon, man pages and a conffile', async () => {
    const { stdout: list } = await run('dpkg-deb', ['-c', debs.first], { maxBuffer: 64 * 1024 * 1024 });
    const paths = list.split('\n').map((line) => line.split(/\s+/).slice(5).join(' ').replace(/^\.\//, ''));
    for (const path of [
      'usr/lib/symroute/dist/cli.js',
      'usr/lib/symroute/build/Release/symroute_native.node',
      'usr/lib/symroute/node_modules/pino/package.json',
      'usr/lib/systemd/system/symroute.service',
      'usr/share/man/man8/symroute.8.gz',
      'usr/share/man/man5/symroute.yaml.5.gz',
      'usr/share/bash-completion/completions/symroute',
      'usr/share/zsh/vendor-completions/_symroute',
      'etc/symroute/symroute.yaml',
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(list).toMatch(/^lrwxrwxrwx .* \.\/usr\/bin\/symroute -> \.\.\/lib\/symroute\/dist\/cli\.js$/m);
    expect(list).toMatch(/^-rw-r--r-- .* \.\/usr\/lib\/symroute\/build\/Release\/symroute_native\.node$/m);
    for (const dev of ['typescript', 'vitest', 'fast-check', '@types']) {
      expect(paths.filter((p) => p.startsWith(`usr/lib/symroute/node_modules/${dev}/`)), dev).toEqual([]);
    }
    expect(paths.filter((p) => /(^|\/)\.npmignore$|^usr\/lib\/symroute\/(src|test)\//.test(p))).toEqual([]);
    const { stdout: depends } = await run('dpkg-deb', ['-f', debs.first, 'Depends']);
    expect(depends).toMatch(/^nodejs \(>= 20\), libc6/);
  });

  it('installs with apt, enabled and started under systemd, ready once converged', async () => {
    // This machine's image forbids starting services from maintainer scripts (a policy-rc.d
    // answering 101, as container images do); a real server has none. Gone in the overlay only.
    await m().check(['rm', '-f', '/usr/sbin/policy-rc.d']);
    const install = await apt('install', '--no-install-recommends', deb(debs.first));
    expect(install.code, install.stdout + install.stderr).toBe(0);
    expect((await m().exec(['systemctl', 'is-enabled', 'symroute'])).stdout.trim()).toBe('enabled');
    expect(await m().property('symroute', 'ActiveState')).toBe('active');
    // The postinst's start returned only after READY=1, so the rules are in place already.
    expect(await rulesAt(30000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    expect(await m().property('symroute', 'StatusText')).toMatch(/^2 interfaces, 2 rules, \d+ routes, in sync$/);
    expect((await m().check(['symroute', '--version'])).trim()).toBe(VERSION);
    expect(await m().check(['man', '-w', 'symroute.yaml'])).toContain('/usr/share/man/man5/symroute.yaml.5.gz');
    // The shipped config is all comments: the daemon runs on the defaults.
    for (const line of (await m().check(['cat', CONFIG])).trimEnd().split('\n')) expect(line).toMatch(/^#/);
  });

  it('reloads an edited config', async () => {
    await m().check(['sh', '-c', `printf 'rule:\\n  priority: 31000\\n' >> ${CONFIG}`]);
    const reload = await m().exec(['systemctl', 'reload', 'symroute'], 60_000);
    expect(reload.code, reload.stderr).toBe(0);
    // `systemctl reload` returned after the daemon's verdict: the new rules are there now.
    expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    expect(await rulesAt(30000)).toEqual([]);
  });

  it('upgrades to a rebuilt package without a rule or route going away, keeping the edited config', async () => {
    const pid = await mainPid();
    const monitor = spawn('ip', ['-n', ns, 'monitor', 'rule', 'route'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let events = '';
    monitor.stdout.on('data', (chunk: Buffer) => (events += chunk.toString()));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // the monitor is subscribed
      const upgrade = await m().exec(['dpkg', '-i', '--force-confold', deb(debs.upgrade)], 180_000);
      expect(upgrade.code, upgrade.stdout + upgrade.stderr).toBe(0);
      expect((await m().check(['symroute', '--version'])).trim()).toBe(UPGRADE);
      expect(await m().property('symroute', 'ActiveState')).toBe('active');
      expect(await mainPid()).not.toBe(pid); // restarted onto the new code
      expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    } finally {
      monitor.kill();
    }
    expect(events.split('\n').filter((line) => line.startsWith('Deleted'))).toEqual([]);
    expect(await m().check(['cat', CONFIG])).toContain('priority: 31000');
  });

  it('removes (stopping the service, rules left in place, config kept) and purges', async () => {
    const remove = await apt('remove', 'symroute');
    expect(remove.code, remove.stdout + remove.stderr).toBe(0);
    expect(await m().property('symroute', 'ActiveState')).toBe('inactive');
    expect((await m().exec(['test', '-e', '/usr/lib/symroute/dist/cli.js'])).code).not.toBe(0);
    expect((await m().exec(['test', '-e', CONFIG])).code).toBe(0);
    expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);

    const purge = await m().exec(['dpkg', '--purge', 'symroute'], 120_000);
    expect(purge.code, purge.stdout + purge.stderr).toBe(0);
    expect((await m().exec(['test', '-e', '/etc/symroute'])).code).not.toBe(0);
    expect((await m().exec(['dpkg', '-s', 'symroute'])).code).not.toBe(0);
    const leftovers = await m().exec(['sh', '-c', 'ls /var/lib/systemd/deb-systemd-helper-enabled /etc/systemd/system/*.wants 2>/dev/null | grep symroute']);
    expect(leftovers.stdout).toBe('');
  });

  it('is named symroute_<version>_<arch>.deb and lintian finds no error or unexplained warning', async () => {
    const { stdout: arch } = await run('dpkg', ['--print-architecture']);
    expect(debs.first).toBe(join(out, `symroute_${VERSION}_${arch.trim()}.deb`));
    // lintian exits non-zero on errors; overridden tags are not shown.
    const { stdout, stderr } = await lintian!;
    const findings = (stdout + stderr).split('\n').filter((line) => /^[EW]: /.test(line));
    expect(findings).toEqual([]);
  }, 300_000);

  it('changed nothing outside the overlay', async () => {
    expect(hostState()).toEqual(before);
  });
});
