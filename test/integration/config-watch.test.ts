// `run --watch-config`: the daemon follows its config file through both ways it is replaced
// in practice — the kubelet's atomic swap of a ConfigMap volume's `..data` symlink, and an
// editor writing a new file and renaming it over the old one — applying each change as a
// diff and rejecting a bad one exactly like SIGHUP. Real files in a temp dir, the real
// daemon in a namespace. Addresses from 198.18.0.0/15.
import { mkdirSync, renameSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigMapVolume } from '../support/deploy.js';
import { eventually, Lab, type DaemonProcess } from '../support/lab.js';

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

/** A namespace with NICs b0, b1 (198.18.{1,2}.10/24), each a veth to a peer namespace. */
async function twoNicHost(l: Lab): Promise<{ ns: string; v4: string[]; tables: number[] }> {
  const ns = await l.namespace('h');
  const peer = await l.namespace('p');
  const v4: string[] = [];
  const tables: number[] = [];
  for (let k = 0; k < 2; k++) {
    await l.veth(ns, `b${k}`, peer, `p${k}`);
    await l.ip(ns, 'addr', 'add', `198.18.${k + 1}.10/24`, 'dev', `b${k}`);
    v4.push(`198.18.${k + 1}.10`);
    tables.push(await l.tableOf(ns, `b${k}`));
  }
  return { ns, v4, tables };
}

async function startWatching(l: Lab, ns: string, configPath: string): Promise<DaemonProcess> {
  const daemon = l.startDaemon(ns, ['--config', configPath, '--watch-config']);
  await eventually(() => expect(daemon.messages(), daemon.stderr).toContainEqual(expect.stringMatching(/^running\b/)));
  return daemon;
}

const rulesAt = (host: { v4: string[]; tables: number[] }, priority: number) =>
  host.v4.map((src, k) => `from ${src} lookup ${host.tables[k]} pref ${priority}`).sort();

const reloads = (daemon: DaemonProcess) => daemon.messages().filter((m) => m.startsWith('reloaded configuration from '));
const rejections = (daemon: DaemonProcess) => daemon.messages().filter((m) => m.startsWith('config reload rejected'));

async function reloadCounts(l: Lab, ns: string): Promise<{ success: number; failure: number }> {
  const text = await l.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
  const value = (result: string) =>
    Number(text.match(new RegExp(`^symroute_config_reloads_total\\{result="${result}"\\} (\\S+)$`, 'm'))?.[1]);
  return { success: value('success'), failure: value('failure') };
}

describe('--watch-config', () => {
  it('follows a Kubernetes ConfigMap volume through ..data swaps, and rejects a bad update like SIGHUP', async () => {
    lab = new Lab();
    const l = lab;
    const host = await twoNicHost(lab);
    const volume = new ConfigMapVolume(join(lab.dir, 'configmap'));
    const path = volume.write('symroute.yaml', 'rule:\n  priority: 30000\n');
    const daemon = await startWatching(lab, host.ns, path);
    expect(await lab.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 30000));

    volume.write('symroute.yaml', 'rule:\n  priority: 31000\n');
    await eventually(async () => expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 31000)));
    await eventually(() => expect(reloads(daemon)).toEqual([`reloaded configuration from ${path}: 2 interfaces, 2 rules, 2 routes, in sync`]));

    // A bad update is rejected whole; the running config stays.
    volume.write('symroute.yaml', 'rule:\n  priority: high\n');
    await eventually(() =>
      expect(rejections(daemon)).toEqual([
        `config reload rejected, keeping the running config: ${path}:2: rule.priority: expected an integer 6..32603, got "high"`,
      ]),
    );
    expect(await lab.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 31000));
    expect(await reloadCounts(lab, host.ns)).toEqual({ success: 1, failure: 1 });

    // Still watching after the directories it resolved into were removed.
    volume.write('symroute.yaml', 'rule:\n  priority: 32000\n');
    await eventually(async () => expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 32000)));
    await eventually(async () => expect(await reloadCounts(l, host.ns)).toEqual({ success: 2, failure: 1 }));
    expect(daemon.child.exitCode).toBeNull();
    expect(daemon.errors()).toEqual(rejections(daemon));
  });

  it('follows an editor that writes a new file and renames it over the config, and a write in place', async () => {
    lab = new Lab();
    const l = lab;
    const host = await twoNicHost(lab);
    const path = lab.writeConfig('rule:\n  priority: 30000\n');
    const daemon = await startWatching(lab, host.ns, path);

    // vim/emacs-style: a new inode under a temporary name, renamed over the old one.
    writeFileSync(`${path}.swp`, 'rule:\n  priority: 31000\n');
    renameSync(`${path}.swp`, path);
    await eventually(async () => expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 31000)));

    // The same inode, truncated and rewritten.
    writeFileSync(path, 'rule:\n  priority: 31000\ninterfaces:\n  include: [b0]\n');
    await eventually(async () =>
      expect(await l.ownedRuleLines(host.ns)).toEqual([`from ${host.v4[0]} lookup ${host.tables[0]} pref 31000`]),
    );
    await eventually(async () => expect(await reloadCounts(l, host.ns)).toEqual({ success: 2, failure: 0 }));
    expect(reloads(daemon)).toHaveLength(2);
    expect(daemon.errors()).toEqual([]);
  });

  it('follows a config that is a symlink into another directory when the target is edited there', async () => {
    lab = new Lab();
    const l = lab;
    const host = await twoNicHost(lab);
    mkdirSync(join(lab.dir, 'etc'));
    mkdirSync(join(lab.dir, 'srv'));
    const target = join(lab.dir, 'srv', 'routing.yaml');
    writeFileSync(target, 'rule:\n  priority: 30000\n');
    const path = join(lab.dir, 'etc', 'symroute.yaml');
    symlinkSync(target, path);
    const daemon = await startWatching(lab, host.ns, path);

    writeFileSync(target, 'rule:\n  priority: 31000\n'); // nothing changes in etc/
    await eventually(async () => expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 31000)));
    expect(daemon.errors()).toEqual([]);
  });

  it('refuses a file over 1 MiB by its size, like SIGHUP, without reading it to compare', async () => {
    lab = new Lab();
    const l = lab;
    const host = await twoNicHost(lab);
    const path = lab.writeConfig('rule:\n  priority: 30000\n');
    const daemon = await startWatching(lab, host.ns, path);

    // Valid text at the start of a 64 GiB sparse file: reading it whole would never end.
    writeFileSync(path, 'rule:\n  priority: 31000\n');
    truncateSync(path, 64 * 1024 ** 3);
    await eventually(() =>
      expect(rejections(daemon)).toEqual([
        `config reload rejected, keeping the running config: ${path}: config is larger than 1048576 bytes (1 MiB), the most symroute reads`,
      ]),
    );
    expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 30000));

    // And back to a normal size: applied.
    writeFileSync(path, 'rule:\n  priority: 31000\n');
    await eventually(async () => expect(await l.ownedRuleLines(host.ns)).toEqual(rulesAt(host, 31000)));
  });

  it('cannot be combined with --once', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const result = await lab.runCli(ns, ['run', '--once', '--watch-config']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--once and --watch-config exclude each other');
  });
});
