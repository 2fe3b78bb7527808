// The .rpm, as far as this Debian machine can judge one (no RHEL root can be booted here):
// built by rpmbuild from the tree the .deb is made of, checked by rpmlint, its metadata read
// back by rpm, and installed with `rpm --root … --nodeps` into a scratch copy of the cached
// stock Debian 12 root (it has the /bin/sh and systemctl the scriptlets call), where
// `systemd-analyze verify --root` checks the unit with the command it names in place.
// Proven: the files, the %config(noreplace), the requirements, the scriptlets' calls. Not
// proven: a RHEL/Rocky/Fedora userland running it (README, "Which systems were proven").
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../support/lab.js';
import { builtPackages, VERSION, type Packages } from '../support/packages.js';
import { stockDebian12 } from '../support/stock-root.js';

const run = promisify(execFile);
const rpm = async (...args: string[]) => (await run('rpm', args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
const HELPER = 'usr/lib/systemd/systemd-update-helper';

/** Regular files and symlinks of a package, as paths without the leading /. */
async function rpmFiles(path: string): Promise<string[]> {
  const lines = (await rpm('-qp', '--qf', '[%{FILEMODES:perms} %{FILENAMES}\n]', path)).trim().split('\n');
  return lines.filter((line) => /^[-l]/.test(line)).map((line) => line.split(' ')[1]!.slice(1)).sort();
}

async function debFiles(path: string): Promise<string[]> {
  const { stdout } = await run('dpkg-deb', ['-c', path], { maxBuffer: 64 * 1024 * 1024 });
  return stdout
    .trim()
    .split('\n')
    .filter((line) => /^[-l]/.test(line))
    .map((line) => line.split(/\s+/)[5]!.replace(/^\.\//, ''))
    .sort();
}

describe('the .rpm', () => {
  let packages: Packages;
  let scratch: string;

  beforeAll(async () => {
    let root: string;
    [packages, root] = await Promise.all([builtPackages(), stockDebian12()]);
    scratch = mkdtempSync(join(tmpdir(), 'symroute-rpm-root-'));
    await run('cp', ['-a', `${root}/.`, scratch]); // device nodes and all
  }, 900_000);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('holds the files of the .deb, in the places an rpm system has for them, for x86_64 and aarch64', async () => {
    expect(basename(packages.rpm.x86_64)).toBe(`symroute-${VERSION}-1.x86_64.rpm`);
    expect(basename(packages.rpm.aarch64)).toBe(`symroute-${VERSION}-1.aarch64.rpm`);
    const fromDeb = (await debFiles(packages.deb.amd64))
      .filter((p) => !p.startsWith('usr/share/lintian/') && p !== 'usr/share/doc/symroute/changelog.gz')
      .map((p) => p.replace('usr/share/zsh/vendor-completions/', 'usr/share/zsh/site-functions/'))
      .sort();
    expect(await rpmFiles(packages.rpm.x86_64)).toEqual(fromDeb);
    expect(await rpmFiles(packages.rpm.aarch64)).toEqual(fromDeb);
    for (const [arch, path] of Object.entries(packages.rpm)) expect(await rpm('-qp', '--qf', '%{ARCH}', path)).toBe(arch);
    const flags = await rpm('-qp', '--qf', '[%{FILEFLAGS:fflags} %{FILENAMES}\n]', packages.rpm.x86_64);
    expect(flags).toMatch(/^cn \/etc\/symroute\/symroute\.yaml$/m); // %config(noreplace)
    expect(flags).toMatch(/^dl \/usr\/share\/doc\/symroute\/copyright$/m); // %license (a doc too)
    console.log(`rpm: ${fromDeb.length} files, the .deb's (Debian-only files left out, zsh completion in site-functions)`);
  });

  it('requires what rpm found in its ELF files and scripts, no nodejs', async () => {
    for (const [arch, path] of Object.entries(packages.rpm)) {
      const requires = (await rpm('-qp', '--requires', path)).trim().split('\n');
      expect(requires.filter((r) => /node/i.test(r)), arch).toEqual([]);
      expect(requires, arch).toContain('libc.so.6(GLIBC_2.28)(64bit)');
      expect(requires, arch).toContain('libstdc++.so.6()(64bit)');
      expect(requires, arch).toContain('/bin/sh');
      // The official Node.js builds need glibc 2.28 at most: RHEL 8 and later.
      const glibc = requires.map((r) => /^libc\.so\.6\(GLIBC_(\d+)\.(\d+)/.exec(r)).filter((m) => m !== null).map((m) => Number(m[1]) * 100 + Number(m[2]));
      expect(Math.max(...glibc), arch).toBeLessThanOrEqual(228);
    }
    console.log('rpm requires: glibc <= 2.28, libstdc++, libgcc_s, /bin/sh, systemd; no nodejs');
  });

  it('has no rpmlint errors, for x86_64 and aarch64', async () => {
    const { stdout } = await run('rpmlint', ['-r', join(REPO, 'packaging/rpmlintrc'), packages.rpm.x86_64, packages.rpm.aarch64], { timeout: 300_000 }).catch(
      (error: { stdout?: string; stderr?: string }) => ({ stdout: `${error.stdout}${error.stderr}` }),
    );
    expect(stdout.split('\n').filter((line) => /: E: /.test(line))).toEqual([]);
    expect(stdout).toMatch(/2 packages and 0 specfiles checked; 0 errors/);
    console.log(`rpmlint: ${/\d+ errors, \d+ warnings/.exec(stdout)![0]} (no-signature filtered: signing is the distributor's)`);
  });

  it('carries the scriptlets %systemd_post, %systemd_preun and %systemd_postun_with_restart expand to', async () => {
    const scripts = await rpm('-qp', '--scripts', packages.rpm.x86_64);
    expect(scripts).toContain('/usr/lib/systemd/systemd-update-helper install-system-units symroute.service');
    expect(scripts).toContain('/usr/lib/systemd/systemd-update-helper remove-system-units symroute.service');
    expect(scripts).toContain('/usr/lib/systemd/systemd-update-helper mark-restart-system-units symroute.service');
  });

  it('installs with rpm --root --nodeps into a scratch root: files in place, unit verified, scriptlets run', async () => {
    await rpm('--root', scratch, '--initdb');
    // Without systemd-update-helper (systemd before 246, RHEL 8): the preset decides; Debian's enables.
    await rpm('--root', scratch, '-i', '--nodeps', packages.rpm.x86_64);
    expect(await rpm('--root', scratch, '-q', 'symroute')).toBe(`symroute-${VERSION}-1.x86_64\n`);
    const { stdout: enabled } = await run('systemctl', [`--root=${scratch}`, 'is-enabled', 'symroute.service']);
    expect(enabled.trim()).toBe('enabled');
    const listed = (await rpm('--root', scratch, '-ql', 'symroute')).trim().split('\n');
    for (const path of listed) expect(existsSync(join(scratch, path)), path).toBe(true);
    const { stdout: version } = await run('chroot', [scratch, '/usr/bin/symroute', '--version']);
    expect(version.trim()).toBe(VERSION);
    // verify resolves ExecStart= inside the root: /usr/bin/symroute must be there and executable.
    const verify = await run('systemd-analyze', ['verify', `--root=${scratch}`, '/usr/lib/systemd/system/symroute.service']);
    expect(verify.stderr).toBe('');

    // With a systemd-update-helper (RHEL 9, Fedora) that logs its calls: reinstalling (an
    // upgrade to the same version) marks the unit for restart and keeps an edited config;
    // erasing removes the unit; installing anew installs it.
    writeFileSync(join(scratch, HELPER), '#!/bin/sh\necho "$*" >> /var/log/update-helper.calls\n', { mode: 0o755 });
    writeFileSync(join(scratch, 'etc/symroute/symroute.yaml'), 'rule:\n  priority: 31000\n');
    await rpm('--root', scratch, '-U', '--replacepkgs', '--nodeps', packages.rpm.x86_64);
    expect(readFileSync(join(scratch, 'etc/symroute/symroute.yaml'), 'utf8')).toBe('rule:\n  priority: 31000\n');
    await rpm('--root', scratch, '-e', '--nodeps', 'symroute');
    expect(existsSync(join(scratch, 'usr/lib/symroute'))).toBe(false);
    await rpm('--root', scratch, '-i', '--nodeps', packages.rpm.x86_64);
    expect(readFileSync(join(scratch, 'var/log/update-helper.calls'), 'utf8')).toBe(
      ['mark-restart-system-units symroute.service', 'remove-system-units symroute.service', 'install-system-units symroute.service', ''].join('\n'),
    );
    console.log('rpm --root: installed, files in place, systemd-analyze verify --root clean, scriptlets call systemd-update-helper as on RHEL 9');
  });
});
