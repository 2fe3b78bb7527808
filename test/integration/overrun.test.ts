// A receive overrun on the notification socket (ENOBUFS) loses events for good: the daemon
// must notice, dump everything again, and repair what it missed. Freezing the daemon with
// SIGSTOP while the kernel floods the route group makes the overrun real, not simulated.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab } from '../support/lab.js';

// Far more notifications than fit in the socket's 4 MiB receive buffer.
const FLOOD_ROUTES = 30_000;

describe('receive overrun (ENOBUFS)', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it('re-dumps and repairs a change it missed while its socket overflowed', async () => {
    lab = new Lab();
    const host = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.veth(host, 'n0', peer, 'q0');
    await lab.ip(host, 'addr', 'add', '198.18.0.10/24', 'dev', 'n0');
    const daemon = lab.startDaemon(host, ['--config', lab.writeConfig('')]);
    await eventually(async () => expect(await lab.ownedRules(host)).toHaveLength(1));

    const batch = join(lab.dir, 'flood.batch');
    const lines = Array.from({ length: FLOOD_ROUTES }, (_, i) => `route add 203.0.${(i >> 8) & 255}.${i & 255}/32 dev n0 table 77`);
    writeFileSync(batch, `${lines.join('\n')}\n`);
    process.kill(daemon.child.pid!, 'SIGSTOP');
    try {
      // Fill the buffer first, so the one change that matters is among the dropped events.
      await lab.ip(host, '-batch', batch);
      await lab.ip(host, 'rule', 'del', 'from', '198.18.0.10', 'lookup', '1002', 'pref', '30000');
    } finally {
      process.kill(daemon.child.pid!, 'SIGCONT');
    }

    await eventually(async () => expect(await lab.ownedRules(host)).toHaveLength(1));
    const metrics = await lab.exec(host, 'curl', '-s', 'http://127.0.0.1:9477/metrics');
    expect(metrics).toMatch(/^symroute_resyncs_total\{reason="enobufs"\} [1-9]/m);
    expect(metrics).toMatch(/^symroute_drift_repairs_total\{kind="rule"\} 1$/m);
    expect(daemon.messages()).toContain('dumping kernel state again (enobufs)');
    // The foreign table is untouched: every flooded route is still there.
    const foreignRoutes = await lab.exec(host, 'sh', '-c', 'ip route show table 77 | wc -l');
    expect(Number(foreignRoutes)).toBe(FLOOD_ROUTES);
    expect(daemon.child.exitCode).toBeNull();
  });
});
