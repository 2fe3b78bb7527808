// The shipped systemd unit, judged by systemd's own tools (systemd-analyze verify and
// security --offline, which need no running systemd) and by reading it: the service type
// and ordering symroute relies on, and the least-privilege sandbox around it. How it behaves
// under a running systemd is systemd-boot.test.ts.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO } from '../support/lab.js';

const run = promisify(execFile);
const UNIT = join(REPO, 'systemd/symroute.service');

/** Runs systemd-analyze; the output is stdout and stderr together, as an admin would see it. */
async function systemdAnalyze(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('systemd-analyze', args, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('systemd-analyze is not installed: install systemd (it needs no running systemd)');
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

type Unit = Map<string, Array<[key: string, value: string]>>;

/** A unit file's sections and their assignments in order (comments and blanks dropped; no continuations). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = unit.get(header[1]!) ?? [];
      unit.set(header[1]!, section);
      continue;
    }
    expect(line.endsWith('\\'), `continuation lines are not expected: ${line}`).toBe(false);
    const eq = line.indexOf('=');
    expect(eq, `not an assignment: ${line}`).toBeGreaterThan(0);
    expect(section, `assignment outside a section: ${line}`).toBeDefined();
    section!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** Every value assigned to `key` in `section`, in order. */
const values = (unit: Unit, section: string, key: string): string[] =>
  (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);

/** The single value of `key` (systemd would use the last one; a unit should not repeat it). */
function single(unit: Unit, section: string, key: string): string {
  const found = values(unit, section, key);
  expect(found, `${section}.${key}`).toHaveLength(1);
  return found[0]!;
}

const words = (value: string) => value.split(/\s+/).filter(Boolean);

describe('systemd/symroute.service', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** The unit, copied under its own name into a temp dir with ExecStart pointing at /bin/true. */
  function unitWithExistingBinary(): string {
    dir = mkdtempSync(join(tmpdir(), 'symroute-unit-'));
    const text = readFileSync(UNIT, 'utf8');
    const execStart = /^ExecStart=\S+/m;
    expect(text).toMatch(execStart);
    const path = join(dir, 'symroute.service');
    writeFileSync(path, text.replace(execStart, 'ExecStart=/bin/true').replace(/^ExecReload=\S+/m, 'ExecReload=/bin/true'));
    return path;
  }

  it('passes systemd-analyze verify with no output once ExecStart exists', async () => {
    const result = await systemdAnalyze(['verify', unitWithExistingBinary()]);
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('draws no complaint from systemd-analyze verify as shipped except the missing symroute binary', async () => {
    dir = mkdtempSync(join(tmpdir(), 'symroute-unit-'));
    const path = join(dir, 'symroute.service');
    copyFileSync(UNIT, path);
    const binary = words(single(parseUnit(readFileSync(UNIT, 'utf8')), 'Service', 'ExecStart'))[0]!;
    const result = await systemdAnalyze(['verify', path]);
    const complaints = (result.stdout + result.stderr).split('\n').filter(Boolean);
    // On a machine where symroute is installed there is nothing to complain about at all.
    for (const complaint of complaints) {
      expect(complaint).toBe(`symroute.service: Command ${binary} is not executable: No such file or directory`);
    }
    expect(complaints.length).toBeLessThanOrEqual(2); // ExecStart= and ExecReload= name the same binary
  });

  it('is Type=notify, reloads through `symroute reload` and is ordered before the network is up', () => {
    const unit = parseUnit(readFileSync(UNIT, 'utf8'));
    expect(single(unit, 'Service', 'Type')).toBe('notify');
    expect(single(unit, 'Service', 'NotifyAccess')).toBe('main');
    // `symroute reload` waits for the daemon's verdict, so a rejected config fails the reload job.
    expect(words(single(unit, 'Service', 'ExecReload'))).toEqual([words(single(unit, 'Service', 'ExecStart'))[0], 'reload']);
    // No --config: the default file is optional, and a missing one means all defaults.
    expect(words(single(unit, 'Service', 'ExecStart')).slice(1)).toEqual(['run']);
    expect(single(unit, 'Service', 'SyslogIdentifier')).toBe('symroute');
    expect(values(unit, 'Unit', 'After').flatMap(words)).toContain('network-pre.target');
    expect(values(unit, 'Unit', 'Before').flatMap(words)).toContain('network.target');
    expect(values(unit, 'Unit', 'Wants').flatMap(words)).toContain('network.target');
    // WatchdogSec= is what makes systemd set WATCHDOG_USEC, which the daemon pings at half of.
    expect(single(unit, 'Service', 'WatchdogSec')).toMatch(/^\d+s?$/);
  });

  it('runs with CAP_NET_ADMIN only, the four address families it uses, and a JIT-friendly sandbox', () => {
    const unit = parseUnit(readFileSync(UNIT, 'utf8'));
    expect(single(unit, 'Service', 'CapabilityBoundingSet')).toBe('CAP_NET_ADMIN');
    expect(single(unit, 'Service', 'AmbientCapabilities')).toBe('CAP_NET_ADMIN');
    const families = values(unit, 'Service', 'RestrictAddressFamilies').flatMap(words);
    expect(families.some((f) => f.startsWith('~'))).toBe(false); // an allow-list, not a deny-list
    expect([...families].sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    // V8's JIT needs W+X pages; the host's network namespace is the one to manage.
    for (const forbidden of ['MemoryDenyWriteExecute', 'PrivateNetwork', 'PrivateUsers']) {
      for (const [section, assignments] of unit) {
        expect(assignments.map(([k]) => k), `${section} must not set ${forbidden}`).not.toContain(forbidden);
      }
    }
  });

  it('passes systemd-analyze verify with each optional drop-in, which opens only the paths it needs', async () => {
    const unit = unitWithExistingBinary();
    mkdirSync(join(dir!, 'symroute.service.d'));
    for (const dropIn of ['manage-sysctl.conf', 'readable-names.conf']) {
      copyFileSync(join(REPO, 'systemd', dropIn), join(dir!, 'symroute.service.d', dropIn));
    }
    const result = await systemdAnalyze(['verify', unit]);
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
    const sysctl = parseUnit(readFileSync(join(REPO, 'systemd/manage-sysctl.conf'), 'utf8'));
    expect([...sysctl.get('Service')!]).toEqual([['ReadWritePaths', '/proc/sys/net/ipv4/conf']]);
    const names = parseUnit(readFileSync(join(REPO, 'systemd/readable-names.conf'), 'utf8'));
    expect(single(names, 'Service', 'RuntimeDirectoryPreserve')).toBe('yes');
    expect(values(names, 'Service', 'ReadWritePaths')).toEqual([]);
  });

  it('has an overall exposure below 3.0 in systemd-analyze security --offline=true', async () => {
    const result = await systemdAnalyze(['security', '--offline=true', '--no-pager', unitWithExistingBinary()]);
    const match = /Overall exposure level for symroute\.service: (\d+(?:\.\d+)?)/.exec(result.stdout);
    expect(match, result.stdout + result.stderr).not.toBeNull();
    expect(Number(match![1])).toBeLessThan(3.0);
  });
});
