// The shipped unit under a real systemd: this machine's root booted with systemd-nspawn in a
// network namespace of the test's own, the unit verbatim in /etc/systemd/system, the CLI at
// the path the unit names (an overlay over /usr holds the link to this checkout's dist/).
// Driven with systemctl and journalctl inside, judged with `ip -json` from outside.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO } from '../support/lab.js';
import { Machine } from '../support/machine.js';

const UNIT = readFileSync(join(REPO, 'systemd/symroute.service'), 'utf8');
const CONFIG = '/etc/symroute/symroute.yaml';
/** CAP_NET_ADMIN is capability 12: the only bit the daemon may hold, in every set. */
const NET_ADMIN_ONLY = (1n << 12n).toString(16).padStart(16, '0');

describe('symroute.service under systemd (nspawn)', () => {
  const lab = new Lab();
  let machine: Machine | undefined;
  let ns: string;

  const m = () => machine!;
  const rulesAt = async (priority: number) =>
    (await lab.ownedRules(ns)).filter((r) => r.priority === priority).map((r) => `${r.src} ${r.table}`).sort();
  const journal = async (...args: string[]) =>
    (await m().check(['journalctl', '--no-pager', '-o', 'json', ...args]))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, string>);
  const writeConfig = (yaml: string) => m().check(['sh', '-c', `mkdir -p /etc/symroute && cat > ${CONFIG} <<'EOF'\n${yaml}\nEOF`]);
  const mainPid = async () => Number(await m().property('symroute', 'MainPID'));

  beforeAll(async () => {
    ns = await lab.namespace('m');
    const peer = await lab.namespace('p');
    for (const [k, nic] of ['e1', 'e2'].entries()) {
      await lab.veth(ns, nic, peer, `p${k + 1}`);
      await lab.ip(ns, 'addr', 'add', `198.18.${k + 1}.10/24`, 'dev', nic);
    }
    machine = await Machine.boot({
      name: `symroute-sd-${process.pid}`,
      netns: ns,
      overlays: ['/usr', '/etc'],
      binds: { [REPO]: '/opt/symroute' },
      prepare(upper) {
        mkdirSync(join(upper('/usr'), 'bin'), { recursive: true });
        symlinkSync('/opt/symroute/dist/cli.js', join(upper('/usr'), 'bin/symroute'));
        const unit = join(upper('/etc'), 'systemd/system/symroute.service');
        mkdirSync(dirname(unit), { recursive: true });
        writeFileSync(unit, UNIT);
      },
    });
  }, 180_000);

  afterAll(async () => {
    await machine?.shutdown();
    await lab.cleanup();
  }, 60_000);

  it('starts without a config file and is ready only once converged, saying so in its status', async () => {
    expect((await m().exec(['test', '-e', CONFIG])).code).not.toBe(0);
    await m().check(['systemctl', 'start', 'symroute'], 60_000);
    // Type=notify: `systemctl start` returned, so READY=1 came, so the rules are already there.
    expect(await rulesAt(30000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    expect(await m().property('symroute', 'ActiveState')).toBe('active');
    expect(await m().property('symroute', 'StatusText')).toMatch(/^2 interfaces, 2 rules, \d+ routes, in sync$/);
  });

  it('runs as an unprivileged dynamic user holding CAP_NET_ADMIN and nothing else', async () => {
    const status = await m().check(['cat', `/proc/${await mainPid()}/status`]);
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim();
    expect(field('Name')).toBe('symroute');
    for (const uid of field('Uid')!.split(/\s+/)) expect(Number(uid)).toBeGreaterThan(0);
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      if (set === 'CapInh') continue; // ambient capabilities need the inheritable bit too; it is the same one
      expect(field(set), set).toBe(NET_ADMIN_ONLY);
    }
    expect(field('CapInh')).toMatch(new RegExp(`^(${NET_ADMIN_ONLY}|0{16})$`));
    expect(field('NoNewPrivs')).toBe('1');
  });

  it('logs to the journal as "symroute", with syslog priorities', async () => {
    const entries = await journal('-t', 'symroute');
    expect(entries.length).toBeGreaterThan(0);
    for (const entry of entries) {
      expect(entry.SYSLOG_IDENTIFIER).toBe('symroute');
      expect(entry.MESSAGE).toMatch(/^\{/); // the <priority> prefix was taken off by journald
    }
    const converged = entries.find((e) => /"msg":"converged in /.test(e.MESSAGE!));
    expect(converged?.PRIORITY).toBe('6');
    expect(converged?._COMM).toBe('symroute');
    // An error: a rejected config (SIGHUP straight to the daemon) is logged at priority 3.
    await writeConfig('rule:\n  priority: high');
    await m().check(['systemctl', 'kill', '--kill-who=main', '--signal=SIGHUP', 'symroute']);
    const rejected = await eventually(async () => {
      const errors = await journal('-t', 'symroute', '-p', 'err');
      const found = errors.find((e) => /reload rejected/.test(e.MESSAGE!));
      expect(found, JSON.stringify(errors)).toBeDefined();
      return found!;
    });
    expect(rejected.PRIORITY).toBe('3');
    expect(rejected.MESSAGE).toContain('rule.priority');
    await m().check(['rm', CONFIG]);
  });

  it('reloads a valid config: `systemctl reload` exits 0 once it is applied', async () => {
    await writeConfig('rule:\n  priority: 31000');
    const reload = await m().exec(['systemctl', 'reload', 'symroute'], 60_000);
    expect(reload.code, reload.stderr).toBe(0);
    // The reload job waited for the verdict: the new rules are in place now, the old ones gone.
    expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    expect(await rulesAt(30000)).toEqual([]);
    expect(await m().property('symroute', 'StatusText')).toMatch(/in sync$/);
  });

  it('fails `systemctl reload` when the config is rejected, keeps running on the old one, and logs it as an error', async () => {
    const pid = await mainPid();
    await writeConfig('rule:\n  priority: high');
    const reload = await m().exec(['systemctl', 'reload', 'symroute'], 60_000);
    expect(reload.code, reload.stderr).toBe(1);
    // What `symroute reload` printed (the problems) is in the journal under the unit.
    const said = (await journal('-u', 'symroute')).map((e) => e.MESSAGE).join('\n');
    expect(said).toContain('rule.priority');
    expect(await m().property('symroute', 'ActiveState')).toBe('active');
    expect(await mainPid()).toBe(pid);
    expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
    const errors = await journal('-t', 'symroute', '-p', 'err');
    const rejected = errors.find((e) => /reload rejected/.test(e.MESSAGE!));
    expect(rejected?.PRIORITY, JSON.stringify(errors)).toBe('3');
    expect(rejected?.MESSAGE).toContain('rule.priority');
    await writeConfig('rule:\n  priority: 31000');
    expect((await m().exec(['systemctl', 'reload', 'symroute'], 60_000)).code).toBe(0);
  });

  it('is restarted by the watchdog when it stops answering, and pings it while healthy', async () => {
    // 4 s instead of 30 s, so the test need not wait long: pings every 2 s.
    await m().check(['sh', '-c', 'mkdir -p /run/systemd/system/symroute.service.d && printf "[Service]\\nWatchdogSec=4s\\n" > /run/systemd/system/symroute.service.d/watchdog.conf && systemctl daemon-reload && systemctl restart symroute'], 60_000);
    expect(await m().property('symroute', 'WatchdogUSec')).toBe('4s');
    const pinged = Number(await m().property('symroute', 'WatchdogTimestampMonotonic'));
    await eventually(async () => expect(Number(await m().property('symroute', 'WatchdogTimestampMonotonic'))).toBeGreaterThan(pinged), 15_000, 200);
    expect(await m().property('symroute', 'NRestarts')).toBe('0');

    const frozen = await mainPid();
    await m().check(['kill', '-STOP', String(frozen)]);
    await eventually(async () => expect(await m().property('symroute', 'Result')).toBe('watchdog'), 20_000, 200);
    // systemd follows its SIGABRT with SIGCONT, so the frozen process dies and is restarted.
    await eventually(async () => {
      expect(await m().property('symroute', 'NRestarts')).toBe('1');
      expect(await m().property('symroute', 'ActiveState')).toBe('active');
    }, 30_000, 200);
    expect(await mainPid()).not.toBe(frozen);
    expect(await rulesAt(31000)).toEqual(['198.18.1.10 1002', '198.18.2.10 1003']);
  });

  it('stops cleanly, leaving the rules and routes in place', async () => {
    const before = await lab.kernelState(ns);
    await m().check(['systemctl', 'stop', 'symroute'], 60_000);
    expect(await m().property('symroute', 'ActiveState')).toBe('inactive');
    expect(await m().property('symroute', 'Result')).toBe('success');
    expect(await lab.kernelState(ns)).toBe(before);
    expect(await rulesAt(31000)).toHaveLength(2);
  });
});
