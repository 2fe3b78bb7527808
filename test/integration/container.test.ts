// The container as Kubernetes runs it, minus the container runtime (no image can be built
// here): the Dockerfile's stages emulated in a temp dir (test/support/dockerfile.ts: the
// same COPYs from the same build context, the same RUN), then the image's exact ENTRYPOINT
// + CMD run from the last stage's files (/opt/symroute there; /etc/symroute → a ConfigMap
// volume written like the kubelet writes one, holding the ConfigMap from deploy/kubernetes),
// as root with every capability but NET_ADMIN dropped, in a namespace. Then the DaemonSet's
// probes are asked on the node's address and the ConfigMap is updated. Addresses from
// 198.18.0.0/15.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ConfigMapVolume, dockerfileExec, findManifest, KUBERNETES, kustomize } from '../support/deploy.js';
import { buildStages } from '../support/dockerfile.js';
import { DaemonProcess, eventually, Lab, REPO } from '../support/lab.js';

const CAP_NET_ADMIN_BIT = 1n << 12n;
// What the runtime does with `capabilities: {drop: [ALL], add: [NET_ADMIN]}` and
// allowPrivilegeEscalation: false, for a process that stays uid 0.
const CONTAINER_CAPS = ['--bounding-set=-all,+net_admin', '--inh-caps=-all', '--no-new-privs'];

let lab: Lab | undefined;
let container: DaemonProcess | undefined;

afterEach(async () => {
  await container?.stop('SIGKILL');
  container = undefined;
  await lab?.cleanup();
  lab = undefined;
});

/** The image's argv with its paths mapped onto the emulated image's root (Node.js is this machine's). */
function imageCommand(imageRoot: string, configDir: string): string[] {
  const map = (arg: string) =>
    arg === '/usr/local/bin/node'
      ? process.execPath
      : arg.replace(/^\/etc\/symroute\//, `${configDir}/`).replace(/^\/opt\//, `${imageRoot}/opt/`);
  return [...dockerfileExec('ENTRYPOINT'), ...dockerfileExec('CMD')].map(map);
}

async function probe(l: Lab, ns: string, url: string): Promise<number> {
  return Number(await l.exec(ns, 'curl', '-s', '-o', '/dev/null', '--max-time', '5', '-w', '%{http_code}', url));
}

describe('the container entrypoint', () => {
  it('is built from production files only, converges with NET_ADMIN only, answers the DaemonSet probes on the node address, and follows ConfigMap updates', async () => {
    lab = new Lab();
    const l = lab;
    const imageRoot = await buildStages(REPO, join(lab.dir, 'docker'));
    const app = join(imageRoot, 'opt/symroute');
    expect(readdirSync(app).sort()).toEqual(['build', 'dist', 'node_modules', 'package.json']);
    for (const dev of ['typescript', 'vitest', 'kubernetes-models']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    expect(existsSync(join(app, 'node_modules/prom-client'))).toBe(true);
    expect(JSON.parse(readFileSync(join(app, 'dist/build-info.json'), 'utf8'))).toEqual({ commit: 'unknown' }); // no .git in the context
    const ns = await lab.namespace('node');
    const peer = await lab.namespace('p');
    await lab.veth(ns, 'eth1', peer, 'p1');
    await lab.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'eth1');
    const table = await lab.tableOf(ns, 'eth1');

    const manifests = kustomize(KUBERNETES);
    const configMap = findManifest<IConfigMap>(manifests, 'ConfigMap');
    const podSpec = findManifest<IDaemonSet>(manifests, 'DaemonSet').spec!.template.spec!;
    const spec = podSpec.containers[0]!;
    const [key, text] = Object.entries(configMap.data!)[0]!;
    const volume = new ConfigMapVolume(join(lab.dir, 'etc-symroute'));
    volume.write(key, text);

    const argv = imageCommand(imageRoot, volume.dir);
    expect(argv[1]).toBe(join(app, 'dist/cli.js'));
    const child = spawn('ip', ['netns', 'exec', ns, 'setpriv', ...CONTAINER_CAPS, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    container = new DaemonProcess(child);
    const daemon = container;
    await eventually(() => expect(daemon.messages(), daemon.stderr).toContainEqual(expect.stringMatching(/^running\b/)));

    // The process holds exactly CAP_NET_ADMIN (setpriv execs: the pid is the daemon's).
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    expect(BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status)![1]}`)).toBe(CAP_NET_ADMIN_BIT);
    expect(/^Uid:\s*(\d+)/m.exec(status)![1]).toBe('0');
    expect(await lab.ownedRuleLines(ns)).toEqual([`from 198.18.1.10 lookup ${table} pref 30000`]);

    // The kubelet probes the pod's IP, which with hostNetwork is the node's address.
    const port = spec.ports!.find((p) => p.name === 'metrics')!.containerPort;
    expect(await probe(lab, ns, `http://198.18.1.10:${port}${spec.readinessProbe!.httpGet!.path}`)).toBe(200);
    expect(await probe(lab, ns, `http://198.18.1.10:${port}${spec.livenessProbe!.httpGet!.path}`)).toBe(200);
    const metrics = await lab.exec(ns, 'curl', '-sS', '--max-time', '5', `http://198.18.1.10:${port}/metrics`);
    expect(metrics).toMatch(/^symroute_build_info\{version="[^"]+",node_version="[^"]+",commit="unknown"\} 1$/m);

    // A ConfigMap edit: the kubelet swaps ..data, the daemon applies it.
    expect(text).toContain('priority: 30000');
    volume.write(key, text.replace('priority: 30000', 'priority: 31000'));
    await eventually(async () => expect(await l.ownedRuleLines(ns)).toEqual([`from 198.18.1.10 lookup ${table} pref 31000`]));
    expect(daemon.errors()).toEqual([]);

    // Kubernetes stops a pod with SIGTERM to PID 1, which the exec-form entrypoint makes the daemon.
    child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(await lab.ownedRuleLines(ns)).toEqual([`from 198.18.1.10 lookup ${table} pref 31000`]); // kept across restarts
  }, 600_000); // the build stage runs npm ci: the addon is compiled, the TypeScript too
});
