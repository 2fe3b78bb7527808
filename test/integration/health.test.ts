// Health endpoints for orchestrators: /healthz (ready: converged and in sync) and /livez
// (alive: the event loop answers and both netlink sockets answer a ping). Proven against a
// real daemon in a namespace, stopped with SIGSTOP, and with a socket broken from outside
// (test/support/deafen-socket.py: a drop-everything filter on the daemon's own socket).
// Addresses from 198.18.0.0/15.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab, REPO, type DaemonProcess } from '../support/lab.js';

const run = promisify(execFile);
const DEAFEN = join(REPO, 'test/support/deafen-socket.py');

let lab: Lab | undefined;
let stopped: DaemonProcess | undefined;

afterEach(async () => {
  if (stopped) process.kill(stopped.child.pid!, 'SIGCONT'); // SIGKILL needs no CONT, but be tidy
  stopped = undefined;
  await lab?.cleanup();
  lab = undefined;
});

async function oneNicHost(l: Lab): Promise<string> {
  const ns = await l.namespace('h');
  const peer = await l.namespace('p');
  await l.veth(ns, 'b0', peer, 'p0');
  await l.ip(ns, 'addr', 'add', '198.18.1.10/24', 'dev', 'b0');
  return ns;
}

/** Status and body of GET `path`, or null when nothing answered within `seconds`. */
async function probe(l: Lab, ns: string, path: string, seconds = 3): Promise<{ status: number; body: string } | null> {
  try {
    const out = await l.exec(ns, 'curl', '-sS', '--max-time', String(seconds), '-w', '\n%{http_code}', `http://127.0.0.1:9477${path}`);
    const cut = out.lastIndexOf('\n');
    return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut).trimEnd() };
  } catch (error) {
    if ((error as { code?: number }).code === 28) return null; // curl: operation timed out
    throw error;
  }
}

describe('health endpoints', () => {
  it('answer while the daemon runs, not while its loop is stopped (SIGSTOP), and again after SIGCONT', async () => {
    lab = new Lab();
    const ns = await oneNicHost(lab);
    const daemon = await lab.startConverged(ns);
    expect(await probe(lab, ns, '/healthz')).toEqual({ status: 200, body: 'ok' });
    expect(await probe(lab, ns, '/livez')).toEqual({ status: 200, body: 'alive' });

    process.kill(daemon.child.pid!, 'SIGSTOP');
    stopped = daemon;
    // The kernel still accepts the connection (listen backlog); nobody answers it.
    expect(await probe(lab, ns, '/livez', 2)).toBeNull();
    expect(await probe(lab, ns, '/healthz', 2)).toBeNull();

    process.kill(daemon.child.pid!, 'SIGCONT');
    stopped = undefined;
    const l = lab;
    await eventually(async () => expect(await probe(l, ns, '/livez')).toEqual({ status: 200, body: 'alive' }));
    expect(await probe(lab, ns, '/healthz')).toEqual({ status: 200, body: 'ok' });
    expect(daemon.errors()).toEqual([]);
  });

  for (const which of ['request', 'notification'] as const) {
    it(`report not alive once the ${which} socket is broken`, async () => {
      lab = new Lab();
      const ns = await oneNicHost(lab);
      const daemon = await lab.startConverged(ns);
      expect(await probe(lab, ns, '/livez')).toEqual({ status: 200, body: 'alive' });

      const { stdout } = await run('python3', [DEAFEN, String(daemon.child.pid), which]);
      expect(stdout.trim()).toBe('1');

      const answer = await probe(lab, ns, '/livez');
      expect(answer).toEqual({ status: 503, body: `${which} socket: no answer to a ping within 2000 ms` });
      // Logged after the answer, and read from another pipe than curl's.
      await eventually(() => expect(daemon.errors()).toContainEqual(`liveness probe failed: ${answer!.body}`), 5000, 50);
      expect(daemon.child.exitCode).toBeNull(); // it says so; the orchestrator restarts it
    });
  }
});
