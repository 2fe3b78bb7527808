// A fight with another manager: something deletes one symroute rule every 100 ms. symroute
// must back off for that rule (re-adds bounded), count and name the conflict (metric,
// /healthz, status, one warning), keep everything else converging, and converge again
// once the deleting stops.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { REPEATS } from '../../src/control/conflicts.js';
import { eventually, Lab } from '../support/lab.js';
import { buildSharedSubnet } from '../support/topologies.js';

const run = promisify(execFile);
const FIGHT_MS = 6000;

describe('a manager that keeps deleting a symroute rule', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('is not fought: re-adds back off, the conflict is counted and named, and it converges when the deleting stops', async () => {
    lab = new Lab();
    const t = await buildSharedSubnet(lab, 2);
    const daemon = await lab.startConverged(t.serverNs);
    const table = await lab.tableOf(t.serverNs, 'b0');
    const rule = `rule from ${t.serverAddresses[0]} lookup ${table} pref 30000`;
    const readd = `added ${rule} (b0)`;
    const from = daemon.lines.length;
    const curl = (path: string) =>
      lab.exec(t.serverNs, 'curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:9477${path}`);

    // The other manager: `ip rule del` every 100 ms (failing while the rule is absent).
    let deletes = 0;
    const deadline = Date.now() + FIGHT_MS;
    let checkedDuringFight = false;
    while (Date.now() < deadline) {
      await run('ip', ['-n', t.serverNs, 'rule', 'del', 'from', t.serverAddresses[0]!, 'lookup', String(table), 'pref', '30000'])
        .then(() => deletes++, () => undefined);
      if (deletes === REPEATS + 1 && !checkedDuringFight) {
        checkedDuringFight = true;
        // Held back after the removal that made it a conflict: out of sync, /healthz names it.
        await eventually(async () => expect(await curl('/healthz')).toBe(`not in sync\nconflict: ${rule} keeps being removed by something else\n\n503`), 3000);
        // Meanwhile everything else converges as usual.
        await lab.ip(t.serverNs, 'addr', 'add', '198.18.1.60/20', 'dev', 'b1');
        await eventually(async () => expect(await lab.ownedRules(t.serverNs)).toHaveLength(2));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const readds = daemon.lines.slice(from).filter((line) => line.includes(`"msg":"${readd}"`)).length;
    // Fought at netlink speed this would be one re-add per delete (~50); backed off (1 s,
    // 2 s, 4 s after the first REPEATS) it is a few more than REPEATS.
    expect(checkedDuringFight).toBe(true);
    expect(readds).toBeGreaterThanOrEqual(deletes - 1); // the last delete's turn may still be ahead
    expect(readds).toBeLessThanOrEqual(deletes);
    expect(readds).toBeGreaterThanOrEqual(REPEATS);
    expect(readds).toBeLessThanOrEqual(REPEATS + 4);

    const warnings = daemon.records.filter((r) => r.level === 40 && r.msg.includes('keeps being removed'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toMatch(new RegExp(`^${rule} keeps being removed by something else \\(${REPEATS} times within 10 s\\): putting it back less and less often`));
    expect(warnings[0]!.msg).toContain('ManageForeignRoutingPolicyRules=no and ManageForeignRoutes=no');
    const status = await lab.runCli(t.serverNs, ['status']);
    expect(status.stdout).toContain(`problems:\n  ${rule}`);
    const metrics = await curl('/metrics');
    const conflicts = Number(/^symroute_conflicts_total\{kind="rule"\} (\d+)$/m.exec(metrics)?.[1]);
    expect(conflicts).toBe(deletes - (REPEATS - 1)); // every removal from the REPEATS-th on, each once
    expect(metrics).toMatch(/^symroute_conflicts 1$/m);

    // The deleting stopped: the rule comes back at its next turn, and stays.
    await eventually(async () => expect(await lab.ownedRuleLines(t.serverNs)).toContain(`from ${t.serverAddresses[0]} lookup ${table} pref 30000`), 20_000);
    // In sync again, the recent conflict still named until the rule has stayed for a window.
    await eventually(async () => expect(await curl('/healthz')).toBe(`ok\nconflict: ${rule} keeps being removed by something else\n\n200`), 20_000);
    await eventually(() => expect(daemon.messages()).toContain(`${rule} has stayed in place for 10 s: conflict over`), 30_000);
    expect(await curl('/healthz')).toBe('ok\n\n200');
    expect(await curl('/metrics')).toMatch(/^symroute_conflicts 0$/m);
    expect(daemon.errors()).toEqual([]);
  }, 120_000);
});
