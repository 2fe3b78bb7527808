// One symroute per network namespace, and its control channel: a lock and a socket in a
// runtime directory only root and the service's user can write ($RUNTIME_DIRECTORY, here the
// tests' own temp directory; /run/symroute on a host), named after the namespace's inode. Two
// instances used to fight forever (different priorities, each deleting the other's rules); now
// the second `run` is refused, naming the first's pid, while read-only commands keep working,
// and the guard vanishes with the process, also after kill -9. `symroute reload` asks the
// daemon over that socket to reload exactly as SIGHUP does, and reports the verdict. No other
// local user can take the daemon's names, speak for it, or ask it anything. Addresses:
// 198.18.0.0/15.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT_NOT_RUNNING } from '../../src/commands/reload.js';
import { eventually, Lab, REPO, type DaemonProcess } from '../support/lab.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** The control socket and lock of namespace `ns`, in the tests' runtime directory. */
function controlFiles(ns: string, directory = process.env.RUNTIME_DIRECTORY!): { socket: string; lock: string } {
  const namespace = `net-${statSync(`/run/netns/${ns}`).ino}`;
  return { socket: join(directory, `${namespace}.sock`), lock: join(directory, `${namespace}.lock`) };
}

/** Runs a command in `ns` to completion: its exit code and output, whatever the code. */
async function runIn(ns: string, command: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('ip', ['netns', 'exec', ns, ...command], { env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/**
 * A fake symroute in Python: binds `address` (a path, or an abstract name with a leading NUL)
 * as root, then becomes `uid` before it listens (SO_PEERCRED names the listener's user), and
 * answers every connection with a greeting from "pid 1" and `{"reload":"applied"}`. Prints
 * "listening" once it is; `asUser` runs it as another user. Killed after each test.
 */
async function impostor(ns: string, address: string, uid: number, asUser: string[] = []): Promise<void> {
  const script = [
    'import os, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
    's.bind(sys.argv[1].replace("@", "\\0", 1) if sys.argv[1].startswith("@") else sys.argv[1])',
    'if not sys.argv[1].startswith("@"): os.chmod(sys.argv[1], 0o666)',
    'os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))',
    's.listen(8)',
    'print("listening", flush=True)',
    'while True:',
    '    c, _ = s.accept()',
    '    c.sendall(b\'{"symroute":"0.1.0","pid":1}\\n{"reload":"applied","summary":"all fine"}\\n\')',
    '    c.close()',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', ns, ...asUser, '/usr/bin/python3', '-c', script, address, String(uid)], { stdio: ['ignore', 'pipe', 'pipe'] });
  impostors.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the impostor exited ${code}: ${stderr}`)));
  });
}

let lab: Lab | undefined;
const impostors: ChildProcess[] = [];

afterEach(async () => {
  for (const child of impostors.splice(0)) child.kill('SIGKILL');
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

/** One raw exchange with the daemon's socket: sends `request` and returns every line the daemon wrote. */
async function rawExchange(ns: string, request: string): Promise<string[]> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
    `s.connect(${JSON.stringify(controlFiles(ns).socket)})`,
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

  it('is per namespace: a daemon in another namespace runs alongside, and is guarded there on its own', async () => {
    lab = new Lab();
    const [ns1, ns2] = [await host(lab, 'h1'), await host(lab, 'h2')];
    await lab.startConverged(ns1);
    const inNs2 = await lab.startConverged(ns2);
    expect(await lab.ownedRules(ns2)).toHaveLength(2);
    expect(controlFiles(ns1).lock).not.toBe(controlFiles(ns2).lock);
    const second = lab.startDaemon(ns2, ['--once']);
    expect(await exitOf(second), second.log()).toBe(1);
    expect(second.errors()).toEqual([
      `symroute is already running in this network namespace (pid ${inNs2.child.pid}); only one may run per namespace`,
    ]);
  });

  it('the guard vanishes with the process, also after kill -9: the next run starts', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const config = lab.writeConfig('');
    const first = await lab.startConverged(ns, config);
    expect(await first.stop('SIGKILL')).toBeNull();
    // The socket is left behind, but nothing listens on it: no daemon, says reload.
    expect(statSync(controlFiles(ns).socket).isSocket()).toBe(true);
    expect((await lab.runCli(ns, ['reload'])).code).toBe(EXIT_NOT_RUNNING);
    const next = await lab.startConverged(ns, config);
    expect(next.errors(), next.log()).toEqual([]);
    expect(await lab.ownedRules(ns)).toHaveLength(2);
    expect((await lab.runCli(ns, ['reload'])).code).toBe(0);
  });

  it('an unprivileged user who takes every name first neither keeps it from starting nor speaks for it', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const { socket, lock } = controlFiles(ns);
    // Namespace inodes are reused: clear what a killed daemon of an earlier test left there.
    for (const file of [socket, lock]) rmSync(file, { force: true });
    // nobody takes the abstract name symroute used to bind, and answers as a daemon would…
    await impostor(ns, '@symroute', 65534, NOBODY);
    // …but cannot create the lock or the socket in the runtime directory.
    const squat = [
      'import socket, sys',
      'for attempt in (lambda: open(sys.argv[1], "w"), lambda: socket.socket(socket.AF_UNIX).bind(sys.argv[2])):',
      '    try: attempt(); print("taken")',
      '    except OSError as e: print(e.strerror)',
    ].join('\n');
    expect((await runIn(ns, [...NOBODY, '/usr/bin/python3', '-c', squat, lock, socket])).stdout).toBe('Permission denied\nPermission denied\n');
    // No daemon yet: reload says so, however the abstract squatter would have answered.
    expect((await lab.runCli(ns, ['reload'])).code).toBe(EXIT_NOT_RUNNING);

    const daemon = await lab.startConverged(ns, lab.writeConfig('rule:\n  priority: 30000\n'));
    expect(daemon.errors(), daemon.log()).toEqual([]);
    expect(await priorities(lab, ns)).toEqual([30000]);
    lab.writeConfig('rule:\n  priority: 31000\n');
    expect(await lab.runCli(ns, ['reload'])).toEqual({ code: 0, stdout: 'reloaded: 2 interfaces, 2 rules, 2 routes, in sync\n', stderr: '' });
    expect(await priorities(lab, ns)).toEqual([31000]);
  });
});

describe('symroute reload', () => {
  it('exits 3 when no symroute runs in the namespace', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const result = await lab.runCli(ns, ['reload']);
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(`symroute: no symroute is running in this network namespace (nothing listens on ${controlFiles(ns).socket})\n`);
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
      `${config}:2: rule.priority: expected an integer 6..32603, got "high"`,
      `${config}:4: table.base: expected an integer 256..4294901759, got 7`,
      '',
    ]);
    expect(await priorities(lab, ns)).toEqual([31000]);

    // The same path as SIGHUP: the same log lines and counters.
    expect(daemon.messages()).toContainEqual(`reloaded configuration from ${config}: 2 interfaces, 2 rules, 2 routes, in sync`);
    expect(daemon.errors()).toEqual([
      `config reload rejected, keeping the running config: ${config}:2: rule.priority: expected an integer 6..32603, got "high"`,
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

    // Another local user (nobody) may not connect to the socket (mode 0600)…
    const refused = { code: 1, stdout: '', stderr: 'symroute: reload refused: permission denied: only root may ask for a reload\n' };
    expect(await runIn(ns, [...NOBODY, process.execPath, CLI, 'reload'])).toEqual(refused);
    // …and where it could, the daemon itself turns the request down (SO_PEERCRED).
    chmodSync(controlFiles(ns).socket, 0o666);
    expect(await runIn(ns, [...NOBODY, process.execPath, CLI, 'reload'])).toEqual(refused);

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

  it('believes no one but root and the service\'s user, and no socket in a directory others can write', async () => {
    lab = new Lab();
    const ns = await host(lab);
    const directory = mkdtempSync(join(tmpdir(), 'symroute-impostor-'));
    try {
      chmodSync(directory, 0o755);
      const env = { RUNTIME_DIRECTORY: directory };
      const { socket } = controlFiles(ns, directory);
      // Bound where only root could, but listening as nobody: it speaks for no symroute.
      await impostor(ns, socket, 65534);
      const fooled = await runIn(ns, [process.execPath, CLI, 'reload'], env);
      expect(fooled.code).toBe(1);
      expect(fooled.stderr).toMatch(
        new RegExp(`^symroute: not talking to ${socket}: it is held by uid 65534 \\(pid \\d+\\), neither root nor the service's user \\(uid 0\\); nothing was asked\n$`),
      );

      // A directory others may write: the client asks nothing there, the daemon will not start there.
      chmodSync(directory, 0o777);
      const why = `${directory} is writable by others than its owner (mode 0777)`;
      expect(await runIn(ns, [process.execPath, CLI, 'reload'], env)).toEqual({
        code: 1, stdout: '', stderr: `symroute: not talking to ${socket}: ${why}; nothing was asked\n`,
      });
      const daemon = lab.startDaemon(ns, [], env);
      expect(await exitOf(daemon), daemon.log()).toBe(1);
      expect(daemon.errors()).toEqual([`refusing the runtime directory ${directory}: ${why}`]);

      // One that nobody made first (the tests' temp directories sit in sticky /tmp; /run admits no one).
      chmodSync(directory, 0o755);
      chownSync(directory, 65534, 65534);
      const inNobodys = lab.startDaemon(ns, [], env);
      expect(await exitOf(inNobodys), inNobodys.log()).toBe(1);
      expect(inNobodys.errors()).toEqual([`refusing the runtime directory ${directory}: ${directory} belongs to uid 65534`]);
      expect(await lab.ownedRules(ns)).toEqual([]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
