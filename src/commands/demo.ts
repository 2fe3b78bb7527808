// `symroute demo`: Case 2 (many NICs in one subnet, see the README) on a machine without
// spare NICs. Builds host A and a multi-NIC host B in private network namespaces, shows how many of B's addresses A can
// reach before and after symroute runs in B, hot-adds a NIC and reports how long symroute
// took to converge, then removes everything it made — also on Ctrl-C or failure.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { addSharedSubnetNic, buildSharedSubnet, NetnsLab } from '../lab/netns.js';
import type { Output } from './inspect.js';

const CLI = new URL('../cli.js', import.meta.url).pathname;
const CONVERGE_TIMEOUT_MS = 15_000;

/** Runs symroute inside a namespace and hands out its convergence log lines as they come. */
class DaemonUnderDemo {
  private readonly child: ChildProcess;
  private readonly convergences: number[] = [];
  private waiters: (() => void)[] = [];
  private exitCode: number | null = null;

  constructor(ns: string, configPath: string) {
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'run', '--config', configPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const record = JSON.parse(line) as { msg?: string; durationSeconds?: number };
      if (record.durationSeconds !== undefined) this.convergences.push(record.durationSeconds);
      this.wakeWaiters();
    });
    this.child.on('exit', (code) => {
      this.exitCode = code ?? 1;
      this.wakeWaiters();
    });
  }

  /** The duration of convergence number `n` (1-based), once symroute logs it. */
  async convergence(n: number): Promise<number> {
    const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
    while (this.convergences.length < n) {
      if (this.exitCode !== null) throw new Error(`symroute exited with status ${this.exitCode}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`symroute did not converge within ${CONVERGE_TIMEOUT_MS / 1000} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.convergences[n - 1]!;
  }

  async stop(): Promise<void> {
    if (this.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

export async function demoCommand(nicCount: number, io: Output): Promise<number> {
  if (process.getuid?.() !== 0) {
    io.err('symroute demo: needs root (it creates network namespaces); nothing was changed');
    return 1;
  }
  const lab = new NetnsLab('symdemo');
  const dir = mkdtempSync(join(tmpdir(), 'symroute-demo-'));
  let daemon: DaemonUnderDemo | null = null;
  const cleanup = async () => {
    await daemon?.stop();
    await lab.removeNamespaces();
    rmSync(dir, { recursive: true, force: true });
  };
  const interrupted = () => {
    io.err('\ninterrupted: removing the demo namespaces');
    cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    io.out(`Building Case 2: host B with ${nicCount} NICs in 198.18.0.0/20 on one switch, strict rp_filter,`);
    io.out('arp_ignore=1; host A in the same /20 (private network namespaces).');
    const topology = await buildSharedSubnet(lab, nicCount);
    const show = async (when: string) => {
      const reachable = await lab.reachable(topology.clientNs, topology.serverAddresses);
      io.out(`${when}: host A reaches ${reachable.length} of ${topology.serverAddresses.length} of B's addresses` +
        (reachable.length ? ` (${reachable.join(', ')})` : ''));
      return reachable.length;
    };
    await show('before symroute');

    const configPath = join(dir, 'symroute.yaml');
    writeFileSync(configPath, 'metrics:\n  listen: false\n');
    daemon = new DaemonUnderDemo(topology.serverNs, configPath);
    const first = await daemon.convergence(1);
    io.out(`symroute started in B and converged in ${(first * 1000).toFixed(1)} ms`);
    const after = await show('with symroute');

    const nic = `b${nicCount}`;
    const address = `198.18.1.${nicCount + 1}`;
    await addSharedSubnetNic(lab, topology, nic, address);
    const hotAdd = await daemon.convergence(2);
    io.out(`hot-added ${nic} (${address}): symroute converged in ${(hotAdd * 1000).toFixed(1)} ms`);
    const finalCount = await show(`after adding ${nic}`);
    io.out('\nB\'s rules now (ip rule):');
    io.out((await lab.ip(topology.serverNs, 'rule')).trimEnd());
    return after === nicCount && finalCount === nicCount + 1 ? 0 : 1;
  } catch (error) {
    io.err(`symroute demo failed: ${(error as Error).message}`);
    return 1;
  } finally {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    await cleanup();
    io.out('Removed the demo namespaces.');
  }
}
