// The .deb end to end on a stock Debian 12: a root built from Debian's archive alone
// (test/support/stock-root.ts: no third-party repository, no nodejs), booted with
// systemd-nspawn under a tmpfs overlay into the namespace of Case 2's server (8 NICs in one
// /20, strict rp_filter and arp_ignore). The package (test/support/packages.ts) is installed
// with apt the way an operator does, enabled and started by its maintainer scripts, judged
// by traffic from host A, reloaded (a bad config fails the reload), upgraded to a rebuilt
// package while `ip monitor` watches for any rule going away, removed and purged. lintian
// judges both architectures' packages. Afterwards neither this machine nor the cached root
// has changed.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../support/lab.js';
import { Machine } from '../support/machine.js';
import { builtPackages, UPGRADE_VERSION, VERSION, type Packages } from '../support/packages.js';
import { stockDebian12 } from '../support/stock-root.js';
import { buildSharedSubnet, type SharedSubnet } from '../support/topologies.js';

const run = promisify(execFile);
const DEBS = '/srv/symroute-debs';
const CONFIG = '/etc/symroute/symroute.yaml';
const MAX_DEB_BYTES = 40 * 1024 * 1024;

const digest = (path: string) => (existsSync(path) ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'missing');
const hostState = () => ({
  dpkgStatus: digest('/var/lib/dpkg/status'),
  lib: existsSync('/usr/lib/symroute'),
  etc: existsSync('/etc/symroute'),
  unit: existsSync('/usr/lib/systemd/system/symroute.service') || existsSync('/etc/systemd/system/multi-user.target.wants/symroute.service'),
});

describe('the .deb on a stock Debian 12', () => {
  const lab = new Lab();
  let packages: Packages;
  let root: string;
  let rootStatus: string;
  let machine: Machine | undefined;
  let topology: SharedSubnet;
  let lintian: Promise<{ stdout: string; stderr: string }[]> | undefined;
  const before = hostState();

  const m = () => machine!;
  const inside = (path: string) => `${DEBS}/${basename(path)}`;
  const sources = async (priority: number) =>
    (await lab.ownedRules(topology.serverNs)).filter((r) => r.priority === priority).map((r) => r.src).sort();
  const apt = (...args: string[]) =>
    m().exec(['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-y', '-o', 'Dpkg::Options::=--force-confold', ...args], 180_000);
  const mainPid = async () => Number(await m().property('symroute', 'MainPID'));

  beforeAll(async () => {
    [packages, root, topology] = await Promise.all([builtPackages(), stockDebian12(), buildSharedSubnet(lab)]);
    rootStatus = digest(join(root, 'var/lib/dpkg/status'));
    // lintian takes a while: it runs alongside the install tests and is judged after them.
    lintian = Promise.all([packages.deb.amd64, packages.deb.arm64].map((deb) => run('lintian', ['--tag-display-limit', '0', deb], { timeout: 600_000 })));
    lintian.catch(() => undefined); // judged in its test
    machine = await Machine.boot({
      name: `symroute-deb-${process.pid}`,
      netns: topology.serverNs,
      directory: root,
      binds: { [dirname(packages.deb.amd64)]: DEBS },
    });
  }, 900_000);

  afterAll(async () => {
    await machine?.shutdown();
    await lab.cleanup();
  }, 60_000);

  it('boots a stock Debian 12 with no third-party repository and no Node.js', async () => {
    expect(await m().check(['sh', '-c', '. /etc/os-release && echo $ID $VERSION_ID'])).toBe('debian 12\n');
    const repositories = await m().check(['sh', '-c', 'cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v "^#" | grep .']);
    for (const line of repositories.trim().split('\n')) expect(line).toMatch(/^deb http:\/\/deb\.debian\.org\/debian(-security)? bookworm(-updates|-security)? main$/);
    expect((await m().exec(['dpkg', '-s', 'nodejs'])).code).not.toBe(0);
    expect((await m().exec(['sh', '-c', 'command -v node nodejs'])).stdout).toBe('');
    console.log(`stock root: ${root}, ${(await m().check(['dpkg-query', '-W', '-f', '${Package}\\n'])).trim().split('\n').length} packages, no nodejs`);
  });

  it('carries its Node.js and depends on no nodejs, only the libraries dpkg-shlibdeps found; at most 40 MB', async () => {
    const { stdout: list } = await run('dpkg-deb', ['-c', packages.deb.amd64], { maxBuffer: 64 * 1024 * 1024 });
    const paths = list.split('\n').map((line) => line.split(/\s+/).slice(5).join(' ').replace(/^\.\//, ''));
    for (const path of [
      'usr/lib/symroute/node/bin/node',
      'usr/lib/symroute/node/LICENSE',
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
    expect(list).toMatch(/^-rwxr-xr-x .* \.\/usr\/bin\/symroute$/m);
    expect(list).toMatch(/^-rwxr-xr-x .* \.\/usr\/lib\/symroute\/node\/bin\/node$/m);
    for (const dev of ['typescript', 'vitest', 'fast-check', '@types', 'node-addon-api']) {
      expect(paths.filter((p) => p.startsWith(`usr/lib/symroute/node_modules/${dev}/`)), dev).toEqual([]);
    }
    for (const [arch, deb] of Object.entries(packages.deb)) {
      const { stdout: fields } = await run('dpkg-deb', ['-f', deb, 'Architecture', 'Depends']);
      expect(fields, deb).toMatch(new RegExp(`^Architecture: ${arch}\\nDepends: libc6 \\(>= [\\d.]+\\), libgcc-s1 \\(>= [\\d.]+\\), libstdc\\+\\+6 \\(>= [\\d.]+\\)\\n$`));
      expect(fields).not.toMatch(/node/);
      // Built with xz -1 here (SYMROUTE_PKG_FAST); a release's xz -6 makes it smaller still.
      expect(statSync(deb).size, deb).toBeLessThanOrEqual(MAX_DEB_BYTES);
      console.log(`${basename(deb)}: ${(statSync(deb).size / 1e6).toFixed(1)} MB (xz -1), ${fields.trim().split('\n')[1]}`);
    }
    const { stdout: copyright } = await run('sh', ['-c', `dpkg-deb --fsys-tarfile "${packages.deb.amd64}" | tar -xO ./usr/share/doc/symroute/copyright`]);
    expect(copyright).toMatch(/^Files: usr\/lib\/symroute\/node\/\*\n.*\nComment: Node.js \d+\.\d+\.\d+/m);
    expect(copyright).toContain('Node.js is licensed for use as follows:');
  });

  it('installs with apt, enabled and started on its own Node.js, and host A reaches all 8 addresses', async () => {
    // Without symroute host A reaches one of the 8 (Case 2).
    expect(await lab.reachable(topology.clientNs, topology.serverAddresses)).toHaveLength(1);
    const install = await apt('install', '--no-install-recommends', inside(packages.deb.amd64));
    expect(install.code, install.stdout + install.stderr).toBe(0);
    expect(install.stdout).not.toMatch(/nodejs/);
    expect((await m().exec(['systemctl', 'is-enabled', 'symroute'])).stdout.trim()).toBe('enabled');
    expect(await m().property('symroute', 'ActiveState')).toBe('active');
    // The postinst's start returned only after READY=1, so the rules are in place already.
    expect(await sources(30000)).toEqual([...topology.serverAddresses].sort());
    expect(await m().property('symroute', 'StatusText')).toMatch(/^8 interfaces, 8 rules, \d+ routes, in sync$/);
    expect((await m().check(['symroute', '--version'])).trim()).toBe(VERSION);
    expect((await m().check(['readlink', `/proc/${await mainPid()}/exe`])).trim()).toBe('/usr/lib/symroute/node/bin/node');
    expect(await lab.reachable(topology.clientNs, topology.serverAddresses)).toEqual(topology.serverAddresses);
    // The shipped config is all comments: the daemon runs on the defaults.
    for (const line of (await m().check(['cat', CONFIG])).trimEnd().split('\n')) expect(line).toMatch(/^#/);
    console.log('stock Debian 12: apt-get install enabled and started symroute; host A reaches 8 of 8 (1 of 8 before)');
  });

  it('reloads an edited config, and the reload fails on a bad one without changing anything', async () => {
    await m().check(['sh', '-c', `printf 'rule:\\n  priority: 31000\\n' >> ${CONFIG}`]);
    const reload = await m().exec(['systemctl', 'reload', 'symroute'], 60_000);
    expect(reload.code, reload.stderr).toBe(0);
    // `systemctl reload` returned after the daemon's verdict: the new rules are there now.
    expect(await sources(31000)).toEqual([...topology.serverAddresses].sort());
    expect(await sources(30000)).toEqual([]);

    const good = await m().check(['cat', CONFIG]);
    await m().check(['sh', '-c', `printf 'rule:\\n  priority: high\\n' > ${CONFIG}`]);
    const bad = await m().exec(['systemctl', 'reload', 'symroute'], 60_000);
    expect(bad.code).not.toBe(0);
    expect(await m().property('symroute', 'ActiveState')).toBe('active');
    expect(await sources(31000)).toEqual([...topology.serverAddresses].sort());
    await m().check(['sh', '-c', `cat > ${CONFIG} <<'EOF'\n${good}EOF`]);
    console.log('systemctl reload: applied a good config, failed on a bad one (rules kept)');
  });

  it('upgrades to a rebuilt package without a rule or route going away, keeping the edited config', async () => {
    const pid = await mainPid();
    const monitor = spawn('ip', ['-n', topology.serverNs, 'monitor', 'rule', 'route'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let events = '';
    monitor.stdout.on('data', (chunk: Buffer) => (events += chunk.toString()));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // the monitor is subscribed
      const upgrade = await apt('install', '--no-install-recommends', inside(packages.upgradeDeb));
      expect(upgrade.code, upgrade.stdout + upgrade.stderr).toBe(0);
      expect((await m().check(['symroute', '--version'])).trim()).toBe(UPGRADE_VERSION);
      expect(await m().property('symroute', 'ActiveState')).toBe('active');
      expect(await mainPid()).not.toBe(pid); // restarted onto the new code
      expect(await sources(31000)).toEqual([...topology.serverAddresses].sort());
    } finally {
      monitor.kill();
    }
    expect(events.split('\n').filter((line) => line.startsWith('Deleted'))).toEqual([]);
    expect(await m().check(['cat', CONFIG])).toContain('priority: 31000');
    console.log(`upgrade ${VERSION} -> ${UPGRADE_VERSION}: restarted, no rule or route deleted`);
  });

  it('removes (stopping the service, rules left in place, config kept) and purges the config', async () => {
    const remove = await apt('remove', 'symroute');
    expect(remove.code, remove.stdout + remove.stderr).toBe(0);
    expect(await m().property('symroute', 'ActiveState')).toBe('inactive');
    expect((await m().exec(['test', '-e', '/usr/lib/symroute/node/bin/node'])).code).not.toBe(0);
    expect((await m().exec(['test', '-e', CONFIG])).code).toBe(0);
    expect(await sources(31000)).toEqual([...topology.serverAddresses].sort());

    const purge = await apt('purge', 'symroute');
    expect(purge.code, purge.stdout + purge.stderr).toBe(0);
    expect((await m().exec(['test', '-e', '/etc/symroute'])).code).not.toBe(0);
    expect((await m().exec(['dpkg', '-s', 'symroute'])).code).not.toBe(0);
    const leftovers = await m().exec(['sh', '-c', 'ls /var/lib/systemd/deb-systemd-helper-enabled /etc/systemd/system/*.wants 2>/dev/null | grep symroute']);
    expect(leftovers.stdout).toBe('');
    console.log('apt-get remove stopped it and kept the rules; apt-get purge removed /etc/symroute');
  });

  it('is named symroute_<version>_<arch>.deb and lintian finds no error or unexplained warning, for amd64 and arm64', async () => {
    expect(basename(packages.deb.amd64)).toBe(`symroute_${VERSION}_amd64.deb`);
    expect(basename(packages.deb.arm64)).toBe(`symroute_${VERSION}_arm64.deb`);
    // lintian exits non-zero on errors; overridden tags are not shown.
    for (const { stdout, stderr } of await lintian!) {
      expect((stdout + stderr).split('\n').filter((line) => /^[EW]: /.test(line))).toEqual([]);
    }
    console.log('lintian: clean for amd64 and arm64 (overrides in packaging/lintian-overrides)');
  }, 600_000);

  it('changed nothing outside the overlay: neither this machine nor the cached stock root', async () => {
    expect(hostState()).toEqual(before);
    expect(digest(join(root, 'var/lib/dpkg/status'))).toBe(rootStatus);
    expect(existsSync(join(root, 'usr/lib/symroute'))).toBe(false);
  });
});
