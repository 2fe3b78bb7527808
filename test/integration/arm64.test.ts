// The arm64 packages, smoke-tested on this amd64 machine under qemu-user (Debian's
// qemu-user-static, called directly: no binfmt registration, nothing of the machine changed)
// with -L pointing at an arm64 sysroot of Debian 12's libraries, built by mmdebstrap
// --variant=extract in a temp dir. The arm64 .deb is unpacked into it and its own Node.js
// runs its own dist/ and addon.
//
// What qemu-user 7.2 allows to prove: the runtime and the daemon start (--version,
// check-config), and the arm64 addon talks to the kernel: link, address and route dumps
// are answered in Case 2's server namespace. What it does not: qemu translates no
// rtnetlink rule messages (its target_to_host_nlmsg_route knows links, addresses and routes
// only, and answers anything else with EOPNOTSUPP without passing it to the kernel), so
// `run --once` stops at the rule dump. Debian's own arm64 `ip rule show` fails the same way,
// which this test shows too, so the limit is qemu's, not the package's.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';
import { builtPackages, VERSION, type Packages } from '../support/packages.js';
import { buildSharedSubnet, type SharedSubnet } from '../support/topologies.js';

const run = promisify(execFile);
const MIRROR = process.env.SYMROUTE_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function exec(command: string, args: string[], timeout = 120_000): Promise<Result> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

// Which rtnetlink dumps the packaged client gets answered, by kind.
const DUMP_SCRIPT = `
const lib = process.argv[2];
const { RtnlClient } = await import(lib + '/dist/netlink/client.js');
const { dumpRequests } = await import(lib + '/dist/kernel/objects.js');
const c = await import(lib + '/dist/netlink/constants.js');
const client = new RtnlClient();
const result = { arch: process.arch };
for (const [kind, type] of [['link', c.RTM_GETLINK], ['address', c.RTM_GETADDR], ['route', c.RTM_GETROUTE], ['rule', c.RTM_GETRULE]]) {
  try {
    result[kind] = (await client.dump(type, dumpRequests[kind], 'dump ' + kind, 'dump')).length;
  } catch (error) {
    result[kind] = 'error: ' + error.message;
  }
}
client.close();
console.log(JSON.stringify(result));
`;

describe('the arm64 packages under qemu-aarch64-static', () => {
  const lab = new Lab();
  let packages: Packages;
  let topology: SharedSubnet;
  let scratch: string;
  let sysroot: string;
  const lib = () => join(sysroot, 'usr/lib/symroute');
  /** The packaged runtime running `args` under qemu, in `ns` if given. */
  const arm64 = (args: string[], ns?: string) => {
    const argv = ['qemu-aarch64-static', '-L', sysroot, join(lib(), 'node/bin/node'), ...args];
    return ns === undefined ? exec(argv[0]!, argv.slice(1)) : exec('ip', ['netns', 'exec', ns, ...argv]);
  };
  const symroute = (args: string[], ns?: string) => arm64([join(lib(), 'dist/cli.js'), ...args], ns);

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'symroute-arm64-'));
    sysroot = join(scratch, 'sysroot');
    [packages, topology] = await Promise.all([
      builtPackages(),
      buildSharedSubnet(lab),
      run('mmdebstrap', ['--quiet', '--variant=extract', '--arch=arm64', '--include=libc6,libgcc-s1,libstdc++6,iproute2', 'bookworm', sysroot, `deb ${MIRROR} bookworm main`], {
        timeout: 300_000,
      }),
    ]);
    await run('dpkg-deb', ['-x', packages.deb.arm64, sysroot]);
    writeFileSync(join(scratch, 'dump.mjs'), DUMP_SCRIPT);
  }, 900_000);

  afterAll(async () => {
    await lab.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('packages arm64 binaries: the runtime and the addon are AArch64 ELF, in the .deb and the .rpm', async () => {
    expect((await run('dpkg-deb', ['-f', packages.deb.arm64, 'Architecture'])).stdout.trim()).toBe('arm64');
    for (const file of ['node/bin/node', 'build/Release/symroute_native.node']) {
      const { stdout } = await run('readelf', ['-h', join(lib(), file)]);
      expect(stdout, file).toMatch(/Machine:\s+AArch64/);
    }
    const { stdout: rpmList } = await run('sh', ['-c', `rpm2cpio "${packages.rpm.aarch64}" | cpio -i --to-stdout ./usr/lib/symroute/node/bin/node 2>/dev/null | head -c 20 | od -An -tx1`]);
    expect(rpmList.replace(/\s+/g, ' ').trim()).toMatch(/^7f 45 4c 46 02 01 01 ([0-9a-f]{2} ){9}02 00 b7 00$/); // ELF64 LE, ET_EXEC, EM_AARCH64
  });

  it('runs: --version, and check-config accepts a good config and rejects a bad one', async () => {
    const version = await symroute(['--version']);
    expect(version.stdout.trim(), version.stderr).toBe(VERSION);
    const node = await arm64(['-p', 'process.arch + " " + process.version']);
    expect(node.stdout).toMatch(/^arm64 v22\.\d+\.\d+\n$/);
    writeFileSync(join(scratch, 'good.yaml'), 'rule:\n  priority: 31000\n');
    writeFileSync(join(scratch, 'bad.yaml'), 'rule:\n  priority: high\n');
    const good = await symroute(['check-config', join(scratch, 'good.yaml')]);
    expect(good.code, good.stderr).toBe(0);
    const bad = await symroute(['check-config', join(scratch, 'bad.yaml')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('bad.yaml:2: rule.priority');
    console.log(`arm64 under qemu: symroute ${VERSION} on Node.js ${node.stdout.trim()}; check-config 0 on a good config, 2 on a bad one`);
  });

  it('talks to the kernel through its arm64 addon as far as qemu translates rtnetlink: links, addresses and routes, not rules', async () => {
    const native = JSON.parse((await exec('ip', ['netns', 'exec', topology.serverNs, process.execPath, join(scratch, 'dump.mjs'), REPO])).stdout) as Record<string, unknown>;
    const dumped = await arm64([join(scratch, 'dump.mjs'), lib()], topology.serverNs);
    const emulated = JSON.parse(dumped.stdout) as Record<string, unknown>;
    expect(emulated, dumped.stderr).toEqual({
      arch: 'arm64',
      link: native.link,
      address: native.address,
      route: native.route,
      rule: 'error: sendmsg(AF_NETLINK): Operation not supported',
    });
    expect(native.link).toBe(9); // lo and the 8 NICs: the same answers as this machine's own run
    expect(native.rule).toBeGreaterThan(0);

    // Debian's own arm64 iproute2 meets the same wall: links yes, rules no.
    const ip = (args: string[]) =>
      exec('ip', ['netns', 'exec', topology.serverNs, 'qemu-aarch64-static', '-L', sysroot, join(sysroot, 'bin/ip'), ...args]);
    expect((await ip(['-o', 'link', 'show', 'b0'])).code).toBe(0);
    const rules = await ip(['rule', 'show']);
    expect(rules.code).not.toBe(0);
    expect(rules.stderr).toContain('Cannot send dump request: Operation not supported');

    // So the daemon's run --once stops at its rule dump, saying why, and changes nothing.
    const once = await symroute(['run', '--once'], topology.serverNs);
    expect(once.code).toBe(1);
    expect(once.stderr).toContain('sendmsg(AF_NETLINK): Operation not supported');
    expect(await lab.ownedRules(topology.serverNs)).toEqual([]);
    console.log(
      `arm64 under qemu: link/address/route dumps answered (${native.link}/${native.address}/${native.route}, as natively); ` +
        `rule dump refused by qemu (EOPNOTSUPP), also for Debian's arm64 ip rule (exit ${rules.code}); run --once not provable under qemu-user 7.2`,
    );
  });

  it('is the package the .rpm also carries: same dist/ and package.json as the .deb', async () => {
    const { stdout } = await run('sh', ['-c', `rpm2cpio "${packages.rpm.aarch64}" | cpio -i --to-stdout ./usr/lib/symroute/package.json 2>/dev/null`]);
    expect(stdout).toBe(readFileSync(join(lib(), 'package.json'), 'utf8'));
  });
});
