// One symroute per network namespace, and its control channel: the abstract AF_UNIX socket
// @symroute. Two instances used to fight forever (different priorities, each deleting the
// other's rules); now the second `run` is refused, naming the first's pid, while read-only
// commands keep working, and the guard vanishes with the process, also after kill -9.
// `symroute reload` asks the daemon over that socket to reload exactly as SIGHUP does, and
// reports the verdict. Addresses: 198.18.0.0/15.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO, type DaemonProcess } from '../support/lab.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

/** A namespace with NICs n0 and n1 (198.18.1.10/24, 198.18.2.10/24), their veth peers excluded. */
async function host(l: Lab, name = 'h'): Promise<string> {
  const ns = await l.namespace(name);
  for (const k of [0, 1]) {
    await l.veth(ns, `n${k}`, ns, `veth${k}`);
    await l.ip(ns, 'addr', 'add', `198.18.${k + 1}.10/24`, 'dev', `n${k}`);
  }
  return ns;
}

/** Waits (bounded) for a daemon to exit by itself; null if it is still running. */
async function exitOf(daemon: DaemonProcess, timeoutMs = 15_000): Promise<number | null> {
  const timeout = new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), timeoutMs));
  const result = await Promise.race([daemon.exited, timeout]);
  return result === 'running' ? null : result;
}

/** The daemon's rule priorities, sorted and de-duplicated. */
async function priorities(l: Lab, ns: string): Promise<number[]> {
  return [...new Set((await l.ownedRules(ns)).map((r) => r.priority))].sort();
}

/** One raw exchange with @symroute: sends `request` and returns every line the daemon wrote. */
async function rawExchange(ns: string, request: string): Promise<string[]> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
    "s.connect('\\0symroute')",
    's.sendall(sys.argv[1].encode())',
    'data = b""',
    'while True:',
    '    chunk = s.recv(4096)',
    '    if not chunk: break',
    '    data += chunk',
    'sys.stdout.write(data.decode())',
  ].join('\n');
  const { stdout } = await run('ip', ['netns', 'exec', ns, 'python3', '-c', script, request]);
  return stdout.split('\n').filter(Boolean);
}

describe('one symroute per network namespace', () => {
  it('refuses a second run (and run --once) with exit 1, naming the first pid; read-only commands still work', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const first = await lab.startConverged(ns, lab.writeConfig('rule:\n  priority: 30000\n', 'first.yaml'));
    const before = await lab.kernelState(ns);

    // A different priority: the two used to delete each other's rules forever.
    const other = lab.writeConfig('rule:\n  priority: 31000\n', 'second.yaml');
    for (const args of [['--config', other], ['--once', '--config', other]]) {
      const second = lab.startDaemon(ns, args);
      const code = await exitOf(second);
      expect(code, second.log()).toBe(1);
      expect(second.errors(), second.log()).toEqual([
        `symroute is already running in this network namespace (pid ${first.child.pid}); only one may run per namespace`,
      ]);
    }
    expect(await lab.kernelState(ns)).toEqual(before);
    expect(first.errors(), first.log()).toEqual([]);
    expect(first.child.exitCode).toBeNull();

    const plan = await lab.runCli(ns, ['plan', '--config', lab.writeConfig('rule:\n  priority: 30000\n', 'first.yaml')]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^in sync: 2 interfaces, 2 rules, 2 routes/);
    const status = await lab.runCli(ns, ['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect((await lab.runCli(ns, ['check-config', other])).code).toBe(0);
    const explain = await lab.runCli(ns, ['explain', '198.18.2.99', '--from', '198.18.2.10']);
    expect(explain.code, explain.stdout).toBe(0);
  });

  it('is per namespace: a daemon in another namespace runs alongside', async () => {
    lab = new Lab();
    const [ns1, ns2] = [await host(lab, 'h1'), await host(lab, 'h2')];
    await lab.startConverged(ns1);
    await lab.startConverged(ns2);
    expect(await lab.ownedRules(ns2)).toHaveLength(2);
  });

  it('the guard vanishes with the process, also after kill -9: the next run starts', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const config = lab.writeConfig('');
    const first = await lab.startConverged(ns, config);
    expect(await first.stop('SIGKILL')).toBeNull();
    const next = await lab.startConverged(ns, config);
    expect(next.errors(), next.log()).toEqual([]);
    expect(await lab.ownedRules(ns)).toHaveLength(2);
  });
});

describe('symroute reload', () => {
  it('exits 3 when no symroute runs in the namespace', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const result = await lab.runCli(ns, ['reload']);
    expect(result.code).toBe(3);
    expect(result.stderr).toBe('symroute: no symroute is running in this network namespace (nothing listens on @symroute)\n');
  });

  it('applies a valid config and exits 0 only once it is in place; a rejected one exits 1 with file:line', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const config = lab.writeConfig('rule:\n  priority: 30000\n');
    const daemon = await lab.startConverged(ns, config);

    lab.writeConfig('rule:\n  priority: 31000\n');
    const applied = await lab.runCli(ns, ['reload']);
    expect(applied, daemon.log()).toEqual({ code: 0, stdout: 'reloaded: 2 interfaces, 2 rules, 2 routes, in sync\n', stderr: '' });
    // No waiting: the verdict came after the new rules were in place.
    expect(await priorities(lab, ns)).toEqual([31000]);

    lab.writeConfig('rule:\n  priority: high\ntable:\n  base: 7\n');
    const rejected = await lab.runCli(ns, ['reload']);
    expect(rejected.code).toBe(1);
    expect(rejected.stdout).toBe('');
    expect(rejected.stderr.split('\n')).toEqual([
      'symroute: reload rejected, the daemon keeps its running config:',
      `${config}:2: rule.priority: expected an integer 2..32765, got "high"`,
      `${config}:4: table.base: expected an integer 256..4294901759, got 7`,
      '',
    ]);
    expect(await priorities(lab, ns)).toEqual([31000]);

    // The same path as SIGHUP: the same log lines and counters.
    expect(daemon.messages()).toContainEqual(`reloaded configuration from ${config}: 2 interfaces, 2 rules, 2 routes, in sync`);
    expect(daemon.errors()).toEqual([
      `config reload rejected, keeping the running config: ${config}:2: rule.priority: expected an integer 2..32765, got "high"`,
      `config reload rejected, keeping the running config: ${config}:4: table.base: expected an integer 256..4294901759, got 7`,
    ]);
    const metrics = await lab.exec(ns, 'curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9477/metrics');
    expect(metrics).toMatch(/^symroute_config_reloads_total\{result="success"\} 1$/m);
    expect(metrics).toMatch(/^symroute_config_reloads_total\{result="failure"\} 1$/m);
  });

  it('answers every one of concurrent requests, and SIGHUPs among them, with the final config', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const daemon = await lab.startConverged(ns, lab.writeConfig('rule:\n  priority: 30000\n'));
    lab.writeConfig('rule:\n  priority: 31000\n');
    const requests = Array.from({ length: 5 }, () => lab!.runCli(ns, ['reload']));
    daemon.child.kill('SIGHUP');
    for (const result of await Promise.all(requests)) {
      expect(result, daemon.log()).toEqual({ code: 0, stdout: 'reloaded: 2 interfaces, 2 rules, 2 routes, in sync\n', stderr: '' });
    }
    expect(await priorities(lab, ns)).toEqual([31000]);
    expect(daemon.errors()).toEqual([]);
  });

  it('takes requests only from root and its own user, and nothing but the reload request', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const daemon = await lab.startConverged(ns, lab.writeConfig('rule:\n  priority: 30000\n'));
    lab.writeConfig('rule:\n  priority: 31000\n');

    // Another local user (nobody) reaches the abstract socket, but may not ask for a reload.
    const nobody = await run('ip', ['netns', 'exec', ns, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
      process.execPath, CLI, 'reload']).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(nobody).toEqual({ code: 1, stderr: 'symroute: reload refused: permission denied: only root may ask for a reload\n' });

    // Anything but the one known request is refused; the greeting names the daemon.
    for (const request of ['{"request":"stop"}\n', '{"request":"reload","extra":1}\n', 'reload\n', `${'x'.repeat(2000)}`]) {
      const lines = await rawExchange(ns, request);
      expect(lines.map((l) => JSON.parse(l))).toEqual([
        { symroute: expect.any(String), pid: daemon.child.pid },
        { error: 'unknown request; the only one is {"request":"reload"}' },
      ]);
    }
    expect(await priorities(lab, ns)).toEqual([30000]);
    expect(daemon.child.exitCode).toBeNull();
    await eventually(() => expect(daemon.messages().filter((m) => m.startsWith('refused a'))).toHaveLength(5));
  });
});
