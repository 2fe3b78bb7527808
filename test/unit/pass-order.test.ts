// What a pass does before its requests reach the kernel, against a scripted kernel: nothing
// but deciding them. Its log lines, metrics, host files (sysctls, table names) and report
// come after the kernel has the last request; the stages it reports cover what it did.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { Daemon } from '../../src/control/daemon.js';
import { STAGES } from '../../src/control/stages.js';
import type { Host } from '../../src/host/host.js';
import { RTM_DELROUTE, RTM_DELRULE, RTM_GETROUTE, RTM_NEWROUTE, RTM_NEWRULE } from '../../src/netlink/constants.js';
import { Metrics } from '../../src/service/metrics.js';
import { Telemetry } from '../../src/service/telemetry.js';
import { settle } from '../support/scripted-daemon.js';
import { ScriptedKernel } from '../support/scripted-kernel.js';

const PROTO = 83;
const WRITES = new Set([RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE]);
let daemon: Daemon | undefined;

afterEach(async () => {
  await daemon?.stop(false);
  daemon = undefined;
});

/** A daemon whose every outward step lands in `steps`, in the order it happens. */
async function recordedDaemon(kernel: ScriptedKernel) {
  const steps: string[] = [];
  const logged: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        const record = JSON.parse(line) as Record<string, unknown>;
        logged.push(record);
        steps.push(`log ${String(record.msg)}`);
      }
      done();
    },
  });
  const metrics = new Metrics({ version: 'test', commit: 'test' });
  for (const metric of [metrics.netlinkRequests, metrics.reconciles, metrics.managedInterfaces, metrics.convergenceSeconds] as const) {
    for (const method of ['inc', 'set', 'observe'] as const) {
      const original = (metric as unknown as Record<string, ((...args: unknown[]) => unknown) | undefined>)[method];
      if (!original) continue;
      (metric as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        steps.push(`metric ${method}`);
        return original.apply(metric, args);
      };
    }
  }
  const send = kernel.requests.send.bind(kernel.requests);
  kernel.requests.send = (messages) => {
    for (const message of messages) {
      const type = Buffer.from(message.buffer, message.byteOffset, message.byteLength).readUInt16LE(4);
      steps.push(WRITES.has(type) ? 'write' : `request ${type}`);
    }
    return send(messages);
  };
  const host: Host = {
    sharedSubnets: (ifnames) => void steps.push(`host sysctls ${ifnames.join(',')}`),
    tablesPlanned: () => void steps.push('host table names'),
    reconfigure: () => undefined,
  };
  daemon = new Daemon(defaultConfig(), new Telemetry(pino({ level: 'debug' }, sink), metrics), kernel, { backoffStartMs: 5, backoffMaxMs: 20 }, host);
  await daemon.start();
  return { daemon, steps, logged };
}

describe('a pass', () => {
  it('sends its requests before any log line, metric, host file or report of the pass', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    const { daemon, steps } = await recordedDaemon(kernel);
    await settle({ daemon, kernel });
    steps.length = 0;
    // A new NIC in eth0's subnet: a new table (names for ip(8)), NICs sharing a subnet
    // (sysctls), and two phases of requests (its connected route, then its rule).
    kernel.link(3, 'eth1');
    kernel.address({ ifindex: 3, cidr: '198.18.0.11/24' });
    await settle({ daemon, kernel });
    expect(kernel.ownedRules(PROTO)).toHaveLength(2);
    const writes = steps.flatMap((step, i) => (step === 'write' ? [i] : []));
    expect(writes).toHaveLength(2);
    const [first, last] = [writes[0]!, writes.at(-1)!];
    // Nothing between the first and the last: no metric between the phases either.
    expect(steps.slice(first, last + 1).filter((step) => step !== 'write')).toEqual([]);
    // Before the first, only the watcher's own work: the dump of the new NIC's table.
    expect(steps.slice(0, first).filter((step) => step !== 'log dumping the routes of tables that now matter' && step !== `request ${RTM_GETROUTE}`)).toEqual([]);
    const after = steps.slice(last + 1);
    expect(after).toContain('host sysctls eth0,eth1');
    expect(after).toContain('host table names');
    expect(after.some((step) => step.startsWith('log added rule from 198.18.0.11'))).toBe(true);
    expect(after.some((step) => step.startsWith('metric'))).toBe(true);
  });

  it('logs with each convergence the time each stage took since the last one', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    const { daemon, logged } = await recordedDaemon(kernel);
    await settle({ daemon, kernel });
    const before = daemon.stageTotals;
    kernel.address({ ifindex: 2, cidr: '198.19.0.10/24' });
    await settle({ daemon, kernel });
    const converged = logged.filter((record) => typeof record.durationSeconds === 'number').at(-1)!;
    const stages = converged.stageMicros as Record<string, number>;
    expect(Object.keys(stages)).toEqual([...STAGES]);
    // The event was read, planned, diffed and applied; what it took is in the totals too.
    for (const stage of ['receive', 'plan', 'diff', 'apply'] as const) {
      expect(stages[stage]).toBeGreaterThan(0);
      expect(daemon.stageTotals[stage]).toBeGreaterThan(before[stage]);
    }
  });
});
