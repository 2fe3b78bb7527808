// Readable names: rt_tables.d/symroute.conf and rt_protos.d/symroute.conf under iproute2_dir,
// judged by iproute2's own name lookup — in a private mount namespace where a temp dir is
// bound over /etc/iproute2, so the host's /etc is never written.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO } from '../support/lab.js';
import { addSharedSubnetNic, buildSharedSubnet } from '../support/topologies.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const HEADER = '# Written by symroute: its tables and protocol number, named for ip(8). Do not edit.\n';

/** `ip <args>` in `ns`, with `dir` bound over /etc/iproute2 for this one command. */
async function ipWithNames(dir: string, ns: string, args: string): Promise<string> {
  const { stdout } = await run('unshare', ['--mount', 'sh', '-c', `mount --bind '${dir}' /etc/iproute2 && ip -n '${ns}' ${args}`]);
  return stdout;
}

describe('readable names for ip(8)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('names each table after its NIC and the protocol symroute, as NICs come and go', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 3);
    const dir = join(lab.dir, 'iproute2');
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig(`iproute2_dir: ${dir}\n`));
    const tables = await Promise.all(t.nics.map((nic) => lab.tableOf(t.serverNs, nic)));
    const tablesPath = join(dir, 'rt_tables.d/symroute.conf');
    const expected = (entries: [number, string][]) =>
      HEADER + entries.sort((a, b) => a[0] - b[0]).map(([table, nic]) => `${table} symroute-${nic}\n`).join('');
    expect(readFileSync(tablesPath, 'utf8')).toBe(expected(t.nics.map((nic, k) => [tables[k]!, nic])));
    expect(readFileSync(join(dir, 'rt_protos.d/symroute.conf'), 'utf8')).toBe(`${HEADER}83 symroute\n`);
    expect(daemon.messages()).toContain(`naming tables for ip(8) in ${dir} (iproute2_dir in the config)`);

    // iproute2 itself resolves them; -N still prints the numbers every JSON reader expects.
    const rules = await ipWithNames(dir, t.serverNs, 'rule show');
    expect(rules).toContain(`30000:\tfrom ${t.serverAddresses[0]} lookup symroute-b0 proto symroute`);
    const numeric = JSON.parse(await ipWithNames(dir, t.serverNs, '-N -json rule show')) as Array<Record<string, string>>;
    expect(numeric.find((r) => r.src === t.serverAddresses[0])).toMatchObject({ table: String(tables[0]), protocol: '83' });
    expect(await ipWithNames(dir, t.serverNs, 'route show table symroute-b1')).toContain('198.18.0.0/20 dev b1 proto symroute');

    // NICs come and go; a reader never sees a half-written file.
    const seen = new Set<string>();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        seen.add(readFileSync(tablesPath, 'utf8'));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    for (let k = 3; k < 6; k++) await addSharedSubnetNic(lab, t, `b${k}`, `198.18.1.${k + 1}`);
    await lab.ip(t.serverNs, 'link', 'del', 'b1');
    const now = await Promise.all(t.nics.filter((nic) => nic !== 'b1').map(async (nic) => [await lab.tableOf(t.serverNs, nic), nic] as [number, string]));
    await eventually(() => expect(readFileSync(tablesPath, 'utf8')).toBe(expected(now)));
    reading = false;
    await reader;
    for (const content of seen) expect(content).toMatch(/^# Written by symroute[^\n]*\n(\d+ symroute-b\d\n)*$/);
    expect(readdirSync(join(dir, 'rt_tables.d'))).toEqual(['symroute.conf']);
    expect(daemon.records.filter((r) => r.level >= 40)).toEqual([]);
  });

  it("writes nothing by default in a network namespace that is not the host's", async () => {
    lab = new Lab();
    const hostFile = '/etc/iproute2/rt_tables.d/symroute.conf';
    const existedBefore = existsSync(hostFile) ? readFileSync(hostFile, 'utf8') : undefined;
    const t = await buildSharedSubnet(lab, 2);
    const daemon = await lab.startConverged(t.serverNs, lab.writeConfig('log: {level: debug}\n'));
    // Either way it stays off: another namespace, or one it cannot compare with the host's.
    expect(daemon.messages()).toContainEqual(
      expect.stringMatching(/^not naming tables for ip\(8\): (not the host's network namespace|cannot tell whether this is the host's network namespace)/),
    );
    expect(existsSync(hostFile) ? readFileSync(hostFile, 'utf8') : undefined).toBe(existedBefore);
  });

  it('warns once and still converges when the directory is read-only', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    const dir = join(lab.dir, 'iproute2');
    mkdirSync(dir);
    const config = lab.writeConfig(`iproute2_dir: ${dir}\nmetrics: {listen: false}\n`);
    const script = `mount --bind -o ro '${dir}' '${dir}' && exec ip netns exec '${t.serverNs}' '${process.execPath}' '${CLI}' run --once --config '${config}'`;
    const { stdout } = await run('unshare', ['--mount', 'sh', '-c', script]);
    const records = stdout.trim().split('\n').map((line) => JSON.parse(line) as { level: number; msg: string });
    const warnings = records.filter((r) => r.level >= 40).map((r) => r.msg);
    expect(warnings).toEqual([
      `cannot write ${dir}/rt_protos.d/symroute.conf: EROFS: read-only file system, mkdir '${dir}/rt_protos.d'; ` +
        `cannot write ${dir}/rt_tables.d/symroute.conf: EROFS: read-only file system, mkdir '${dir}/rt_tables.d'; ` +
        'ip(8) will show table and protocol numbers instead of names',
    ]);
    expect(await lab.ownedRules(t.serverNs)).toHaveLength(2);
    expect(readdirSync(dir)).toEqual([]);
  });
});
