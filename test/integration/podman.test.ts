// The repository's image, built by a real container engine (podman, test/support/podman.ts)
// from the Dockerfile as it is, with --pull=never and a stand-in for the official
// node:22-bookworm (no registry can be reached here), and run the way the README says:
// host network (here: Case 2's server namespace), every capability dropped but NET_ADMIN,
// a read-only root, the config mounted read-only. It converges Case 2 (host A reaches 8 of
// 8), and SIGTERM ends it with exit 0 and the rules left in place.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO } from '../support/lab.js';
import { Podman, ULIMITS } from '../support/podman.js';
import { buildSharedSubnet, type SharedSubnet } from '../support/topologies.js';

const IMAGE = `localhost/symroute-test:${process.pid}`;
const CONTAINER = `symroute-test-${process.pid}`;

describe('the container image, built and run by podman', () => {
  const lab = new Lab();
  let podman: Podman;
  let topology: SharedSubnet;
  let config: string;
  let runtime: string;
  let buildSeconds = 0;

  beforeAll(async () => {
    podman = Podman.open();
    config = mkdtempSync(join(tmpdir(), 'symroute-podman-config-'));
    runtime = mkdtempSync(join(tmpdir(), 'symroute-podman-run-'));
    // iproute2_dir: false, as README says for containers: the image's /etc is neither the
    // host's nor writable (--read-only), so names written there would only be a warning.
    writeFileSync(join(config, 'symroute.yaml'), 'rule:\n  priority: 31000\niproute2_dir: false\n');
    let base: string;
    [topology, base] = await Promise.all([buildSharedSubnet(lab), podman.buildImageStandIn()]);
    const started = Date.now();
    // The build stage fetches npm packages: it gets this machine's network for that.
    await podman.check(
      ['build', '--pull=never', '--layers=false', '--network', 'host', ...ULIMITS, '--build-arg', `BUILD_IMAGE=${base}`, '--build-arg', 'SYMROUTE_COMMIT=podman-test', '-t', IMAGE, REPO],
      900_000,
    );
    buildSeconds = (Date.now() - started) / 1000;
  }, 1_500_000);

  afterAll(async () => {
    if (podman) {
      await podman.exec(['rm', '--force', '--time', '0', CONTAINER]);
      await podman.exec(['rmi', '--force', IMAGE]);
      await podman.exec(['image', 'prune', '--force']); // the build stage's layers
    }
    await lab.cleanup();
    if (config) rmSync(config, { recursive: true, force: true });
    if (runtime) rmSync(runtime, { recursive: true, force: true });
  }, 120_000);

  it('holds Node.js, the libraries it loads and symroute: no shell, no distribution', async () => {
    const { stdout } = await podman.exec(['image', 'inspect', '--format', '{{.Size}}', IMAGE]);
    const bytes = Number(stdout.trim());
    // No shell to list files with: the image's own Node.js walks its root.
    const walk = 'const fs=require("fs");const walk=(d)=>fs.readdirSync(d,{withFileTypes:true}).flatMap((e)=>e.isDirectory()?walk(d+"/"+e.name):[d+"/"+e.name]);' +
      'console.log(JSON.stringify(["/usr","/lib","/opt","/lib64","/bin","/etc"].filter((d)=>fs.existsSync(d)).flatMap(walk)))';
    const listing = await podman.check(['run', '--rm', '--network', 'none', '--entrypoint', '/usr/local/bin/node', ...ULIMITS, IMAGE, '-e', walk]);
    const paths = JSON.parse(listing) as string[];
    expect(paths).toContain('/usr/local/bin/node');
    expect(paths).toContain('/opt/symroute/dist/cli.js');
    expect(paths).toContain('/opt/symroute/build/Release/symroute_native.node');
    expect(paths.filter((p) => /\/(sh|bash|dash|apt|dpkg|npm)$/.test(p))).toEqual([]);
    expect(paths.filter((p) => p.startsWith('/opt/symroute/node_modules/typescript/'))).toEqual([]);
    const libraries = paths.filter((p) => /\.so(\.\d+)*$/.test(p) && !p.startsWith('/opt/'));
    console.log(
      `podman: image built in ${buildSeconds.toFixed(0)} s from the Dockerfile (--pull=never, stand-in base); ${(bytes / 1e6).toFixed(1)} MB; ` +
        `${paths.length} files, shared libraries: ${libraries.map((l) => l.split('/').pop()).join(' ')}`,
    );
  });

  it('runs with NET_ADMIN only and a read-only root, converges Case 2, and on SIGTERM exits 0 leaving the rules', async () => {
    expect(await lab.reachable(topology.clientNs, topology.serverAddresses)).toHaveLength(1);
    await podman.check([
      'run', '--detach', '--name', CONTAINER,
      '--network', `ns:/run/netns/${topology.serverNs}`,
      '--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN',
      '--read-only',
      ...ULIMITS,
      '--volume', `${config}:/etc/symroute:ro`,
      // The host's /run/symroute in production (one daemon per namespace, shared with the
      // host's `symroute reload`); a temp dir of the test's here.
      '--volume', `${runtime}:/run/symroute`,
      IMAGE,
    ]);
    const ruled = async () => (await lab.ownedRules(topology.serverNs)).filter((r) => r.priority === 31000).map((r) => r.src).sort();
    await eventually(async () => expect(await ruled()).toEqual([...topology.serverAddresses].sort()), 60_000, 200);
    expect(await lab.reachable(topology.clientNs, topology.serverAddresses)).toEqual(topology.serverAddresses);
    const capabilities = (await podman.check(['inspect', '--format', '{{.EffectiveCaps}}', CONTAINER])).trim();
    expect(capabilities).toBe('[CAP_NET_ADMIN]');
    // Its one-per-namespace lock and control socket are in the mounted runtime directory.
    expect(readdirSync(runtime).filter((f) => /^net-\d+\.(lock|sock)$/.test(f)).length).toBe(2);

    await podman.check(['kill', '--signal', 'TERM', CONTAINER]);
    const code = (await podman.check(['wait', CONTAINER], 60_000)).trim();
    const logs = await podman.exec(['logs', CONTAINER]);
    expect(code, logs.stdout + logs.stderr).toBe('0');
    expect(await ruled()).toEqual([...topology.serverAddresses].sort());
    expect(logs.stdout + logs.stderr).not.toMatch(/"level":(40|50|60)/); // no warning or error logged
    console.log('podman run --cap-drop ALL --cap-add NET_ADMIN --read-only: converged Case 2 (host A reaches 8 of 8); SIGTERM: exit 0, 8 rules kept');
  });
});
