// The notifications of symroute's own writes (their echoes) are recognised by port and
// sequence number and taken as the objects the writes were made from, undecoded, when they
// say exactly what was asked; one that says something else (the kernel filled something in)
// is decoded. Either way the mirror must hold what the kernel holds: after each step, the
// watcher's mirror against a fresh dump decoded in full, and `ip -json` counting.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';

const run = promisify(execFile);

interface Step {
  name: string;
  errors: string[];
  mirror: { routes: string[]; rules: string[] };
  kernel: { routes: string[]; rules: string[] };
}

describe('echoes of our own writes', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('are taken as the written objects when they repeat the request, decoded when they do not, and the mirror ends equal to the kernel', async () => {
    lab = new Lab();
    const ns = await lab.namespace('e');
    await lab.ip(ns, 'link', 'add', 'n0', 'type', 'ifb');
    await lab.ip(ns, 'link', 'set', 'n0', 'up');
    await lab.ip(ns, 'addr', 'add', '198.18.5.2/28', 'dev', 'n0');
    await lab.ip(ns, 'addr', 'add', '2001:db8:5::2/64', 'dev', 'n0', 'nodad');
    const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, join(REPO, 'test/support/echo-check.mjs'), join(REPO, 'dist')]);
    const report = JSON.parse(stdout) as { steps: Step[]; sent: number; taken: number; recognised: number };
    expect(report.steps.map((step) => step.name)).toEqual(['add', 'replace', 'filled in', 'delete']);
    for (const step of report.steps) {
      expect(step.errors, step.name).toEqual([]);
      expect(step.mirror, step.name).toEqual(step.kernel);
    }
    expect(report.steps[0]!.kernel.routes).toHaveLength(4);
    expect(report.steps[0]!.kernel.rules).toHaveLength(2);
    expect(report.steps[2]!.kernel.routes).toEqual(expect.arrayContaining([expect.stringContaining('2001:db8:6::/64|/0|1024|83')]));
    // Every write was echoed; all but the one the kernel filled in were taken undecoded.
    expect(report.taken).toBe(report.sent);
    expect(report.recognised).toBe(report.sent - 1);
    // The kernel, judged independently: nothing of protocol 83 is left.
    for (const family of [4, 6] as const) {
      expect(await lab.ownedRules(ns, family)).toEqual([]);
      const routes = await lab.ipJsonNumeric<{ protocol?: string }>(ns, `-${family}`, 'route', 'show', 'table', 'all');
      expect(routes.filter((route) => route.protocol === '83')).toEqual([]);
    }
  });
});
