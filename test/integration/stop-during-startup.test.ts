// A stop (SIGTERM/SIGINT) that arrives while the daemon is still starting — loading, dumping,
// installing the first of many rules — is a clean stop: exit 0, and with on_exit: remove
// nothing of symroute's is left. (It used to kill the process by the signal and leave
// whatever the first pass had installed.) Addresses: 198.18.0.0/15.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, type DaemonProcess } from '../support/lab.js';

const NICS = 150;

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

/** `count` NICs n1..n{count}, each a veth whose peer (veth*, excluded by default) stays in `ns`. */
async function manyNics(l: Lab, ns: string, count: number): Promise<void> {
  const lines: string[] = [];
  for (let k = 1; k <= count; k++) {
    lines.push(`link add n${k} type veth peer name veth${k}`);
    lines.push(`addr add 198.18.${k}.10/24 dev n${k}`);
    lines.push(`link set n${k} up`, `link set veth${k} up`);
  }
  const batch = join(l.dir, 'nics.batch');
  writeFileSync(batch, `${lines.join('\n')}\n`);
  await l.ip(ns, '-batch', batch);
}

/** symroute's rules into tables, its skip rules (goto, nop: README, "What every packet pays") and its routes. */
async function ownedCount(l: Lab, ns: string): Promise<{ rules: number; skips: number; routes: number }> {
  const owned = (await l.ipJsonNumeric<{ protocol?: string; table?: string }>(ns, 'rule', 'show')).filter((r) => r.protocol === '83');
  const routes = (await l.ipJsonNumeric<{ protocol?: string }>(ns, 'route', 'show', 'table', 'all')).filter(
    (r) => r.protocol === '83',
  );
  const rules = owned.filter((r) => r.table !== undefined).length;
  return { rules, skips: owned.length - rules, routes: routes.length };
}

describe('stop during start-up', () => {
  // Six starts of a 150-NIC host, each stopped and cleaned up: longer than the default limit.
  it(`exits 0 and, with on_exit: remove, leaves nothing behind, however early it comes (${NICS} NICs)`, { timeout: 300_000 }, async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    await manyNics(lab, ns, NICS);
    const config = lab.writeConfig('on_exit: remove\nlog:\n  level: debug\n');
    // Stop points from the daemon's very first line to after its first convergence: fixed
    // delays after the first line land anywhere in loading, dumping and the first pass;
    // the first "added" line comes once the first pass's writes were acknowledged, before
    // the pass that verifies them; "running" is after the first convergence.
    const firstLine = async (d: DaemonProcess) => d.lines.length > 0;
    const ownedRoute = async () => (await lab!.ip(ns, 'route', 'show', 'table', 'all', 'proto', '83')).trim() !== '';
    const stopPoints: Array<[string, (d: DaemonProcess) => Promise<boolean>, number]> = [
      ['first line', firstLine, 0],
      ['first line', firstLine, 200],
      ['first line', firstLine, 400],
      ['first owned route in the kernel', ownedRoute, 0],
      ['first "added" line', async (d) => d.messages().some((m) => m.startsWith('added ')), 0],
      ['"running" line', async (d) => d.messages().some((m) => /^running\b/.test(m)), 0],
    ];
    const outcomes: string[] = [];
    for (const [i, [point, reached, delayMs]] of stopPoints.entries()) {
      const signal = i % 2 === 0 ? 'SIGTERM' : 'SIGINT';
      const daemon = lab.startDaemon(ns, ['--config', config]);
      await eventually(async () => expect(await reached(daemon), `${daemon.log()}\n${daemon.stderr}`).toBe(true), 30_000, 1);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const code = await daemon.stop(signal);
      const converged = daemon.messages().some((m) => /^running\b/.test(m));
      const removed = daemon.messages().filter((m) => m.startsWith('deleted rule')).length;
      outcomes.push(
        `${signal} at ${point} + ${delayMs} ms: exit ${code}, ${converged ? 'after' : 'before'} first convergence, ${removed} rules removed`,
      );
      expect(code, `${outcomes.join('\n')}\n${daemon.log()}\n${daemon.stderr}`).toBe(0);
      expect(daemon.errors(), daemon.log()).toEqual([]);
      expect(await ownedCount(lab, ns), `${outcomes.join('\n')}\n${daemon.log()}`).toEqual({ rules: 0, skips: 0, routes: 0 });
    }
  });

  it('stopped during start-up with on_exit: keep, leaves what it installed and the next start adopts it', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    await manyNics(lab, ns, NICS);
    const config = lab.writeConfig('');
    const daemon = lab.startDaemon(ns, ['--config', config]);
    await eventually(() => expect(daemon.lines.length, daemon.stderr).toBeGreaterThan(0));
    expect(await daemon.stop('SIGTERM'), daemon.log()).toBe(0);
    expect(daemon.errors(), daemon.log()).toEqual([]);

    const next = await lab.startConverged(ns, config);
    const owned = await ownedCount(lab, ns);
    expect(owned).toMatchObject({ rules: NICS, routes: NICS });
    // 150 `from` rules, a tree (rule-skips.ts): the branch covers (1 to 4) and the catch-all,
    // per branch its leaves' covers and an exit, per leaf slot an exit, and the nop.
    expect(owned.skips).toBeGreaterThanOrEqual(7);
    expect(owned.skips).toBeLessThanOrEqual(50);
    expect(next.errors(), next.log()).toEqual([]);
  });
});
