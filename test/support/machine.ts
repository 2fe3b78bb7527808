// A real systemd for the tests: this machine's own root, booted read-only with systemd-nspawn
// into a network namespace a test made. Whatever the container writes goes to a tmpfs root or
// to overlays whose upper halves are temp dirs, so nothing outside changes. systemd-nspawn
// comes from Debian's systemd-container package, downloaded and extracted into a cache dir,
// never installed (installing it would upgrade the machine's own systemd).
// Commands run inside through nsenter into the container's init: no machined, no D-Bus needed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const NSPAWN_CACHE = join(tmpdir(), 'symroute-test-nspawn');
/** A plain environment for commands inside: nothing of the test runner's leaks in. */
const CONTAINER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };
/** Units that only slow the boot down or wait for things a test machine does not have. */
const MASKED = ['systemd-firstboot.service', 'systemd-timesyncd.service', 'apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'fstrim.timer', 'man-db.timer', 'console-getty.service'];

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** systemd-nspawn from systemd-container, extracted once per machine into a temp cache dir. */
export async function nspawnBinary(): Promise<string> {
  const binary = join(NSPAWN_CACHE, 'usr/bin/systemd-nspawn');
  if (existsSync(binary)) return binary;
  // Download and extract next to the cache, then rename into place: two test files may race.
  const scratch = mkdtempSync(join(tmpdir(), 'symroute-test-nspawn-'));
  try {
    await run('apt-get', ['download', 'systemd-container'], { cwd: scratch, timeout: 120_000 });
    const deb = readdirSync(scratch).find((f) => f.startsWith('systemd-container_') && f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download systemd-container left no .deb (run apt-get update?)');
    mkdirSync(join(scratch, 'root'));
    await run('dpkg-deb', ['-x', join(scratch, deb), join(scratch, 'root')]);
    try {
      renameSync(join(scratch, 'root'), NSPAWN_CACHE);
    } catch (error) {
      if (!existsSync(binary)) throw error;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return binary;
}

export interface MachineOptions {
  /** Unique among running machines (systemd-nspawn -M). */
  name: string;
  /** A named network namespace (ip netns add) the machine lives in. */
  netns: string;
  /**
   * Another root to boot instead of this machine's own (a cached stock distribution), made
   * writable by a tmpfs overlay (--volatile=overlay): the directory itself never changes.
   */
  directory?: string;
  /** Host directories made writable inside through an overlay (upper half in a temp dir). */
  overlays?: string[];
  /** Read-only bind mounts: host path -> path inside. */
  binds?: Record<string, string>;
  /** Called with the overlays' upper dirs before boot, to put files in place. */
  prepare?: (upper: (dir: string) => string) => void;
}

export class Machine {
  private console = '';
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly nspawn: ChildProcess,
    private readonly scratch: string,
  ) {
    nspawn.stdout!.on('data', (chunk: Buffer) => (this.console += chunk.toString()));
    nspawn.stderr!.on('data', (chunk: Buffer) => (this.console += chunk.toString()));
    this.exited = new Promise((resolve) => nspawn.on('exit', (code) => resolve(code)));
  }

  /**
   * Boots the machine's own root (tmpfs root, host /usr read-only unless overlaid), or
   * `directory` under a tmpfs overlay, and waits until systemd is up.
   */
  static async boot(options: MachineOptions): Promise<Machine> {
    const nspawn = await nspawnBinary();
    const scratch = mkdtempSync(join(tmpdir(), `symroute-machine-${options.name}-`));
    const upper = (dir: string) => join(scratch, 'upper', dir);
    for (const dir of options.overlays ?? []) mkdirSync(upper(dir), { recursive: true });
    options.prepare?.(upper);
    const args = [
      ...(options.directory === undefined ? ['-D', '/', '--volatile=yes'] : ['-D', options.directory, '--volatile=overlay']),
      '--keep-unit',
      '--register=no',
      `--machine=${options.name}`,
      '--capability=CAP_NET_ADMIN',
      `--network-namespace-path=/run/netns/${options.netns}`,
      '--console=passive',
      ...(options.overlays ?? []).map((dir) => `--overlay=${dir}:${upper(dir)}:${dir}`),
      ...Object.entries(options.binds ?? {}).map(([host, inside]) => `--bind-ro=${host}:${inside}`),
      '--boot',
      // Up to basic.target only: the services this machine happens to have enabled (a
      // database, a metrics server) have no business starting in a test machine.
      'systemd.unit=basic.target',
      'systemd.firstboot=off',
      ...MASKED.map((unit) => `systemd.mask=${unit}`),
    ];
    const child = spawn(nspawn, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const machine = new Machine(options.name, child, scratch);
    try {
      await machine.waitForBoot();
    } catch (error) {
      await machine.shutdown();
      throw error;
    }
    return machine;
  }

  /** The container's init as the host sees it: nspawn's child once it has become systemd. */
  private initPid: number | undefined;

  private async waitForBoot(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (this.initPid === undefined) {
      if (this.nspawn.exitCode !== null || Date.now() > deadline) throw new Error(`systemd-nspawn did not boot:\n${this.console}`);
      const children = readChildren(this.nspawn.pid!);
      const init = children.find((pid) => readComm(pid) === 'systemd');
      if (init !== undefined) this.initPid = init;
      else await sleep(50);
    }
    // Until systemd has set up its private socket, systemctl cannot connect, and until it has
    // made /run/systemd/system, it says "offline": try again.
    let state = await this.exec(['systemctl', 'is-system-running', '--wait'], 60_000);
    while ((/Failed to connect/.test(state.stderr) || state.stdout.trim() === 'offline') && Date.now() < deadline) {
      await sleep(100);
      state = await this.exec(['systemctl', 'is-system-running', '--wait'], 60_000);
    }
    if (!['running', 'degraded'].includes(state.stdout.trim())) {
      throw new Error(`systemd in ${this.name} is ${state.stdout.trim() || state.stderr}:\n${this.console}`);
    }
  }

  /** Runs a command inside (all of the container's namespaces); never throws for a non-zero exit. */
  async exec(command: string[], timeoutMs = 30_000): Promise<ExecResult> {
    if (this.initPid === undefined) throw new Error(`${this.name} is not running`);
    try {
      const { stdout, stderr } = await run('nsenter', ['-t', String(this.initPid), '-a', ...command], {
        env: CONTAINER_ENV,
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number | string; stdout?: string; stderr?: string; killed?: boolean };
      if (typeof e.code !== 'number') throw error;
      return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  /** Like exec, but a non-zero exit is an error carrying the output. */
  async check(command: string[], timeoutMs?: number): Promise<string> {
    const result = await this.exec(command, timeoutMs);
    if (result.code !== 0) throw new Error(`${command.join(' ')} exited ${result.code}:\n${result.stdout}${result.stderr}`);
    return result.stdout;
  }

  /** systemctl show -p KEY as a value. */
  async property(unit: string, key: string): Promise<string> {
    return (await this.check(['systemctl', 'show', '-P', key, unit])).trim();
  }

  /** Powers the machine off (SIGTERM to nspawn asks its init to), kills it if that hangs, removes the overlays. */
  async shutdown(): Promise<void> {
    if (this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      this.nspawn.kill('SIGTERM');
      const timedOut = await Promise.race([this.exited.then(() => false), sleep(30_000).then(() => true)]);
      if (timedOut) {
        // Killing a PID namespace's init kills everything in it.
        if (this.initPid !== undefined) tryKill(this.initPid);
        this.nspawn.kill('SIGKILL');
        await this.exited;
      }
    }
    this.initPid = undefined;
    rmSync(this.scratch, { recursive: true, force: true });
    rmSync(`/run/systemd/nspawn/propagate/${this.name}`, { recursive: true, force: true });
  }

  /** The container's console so far (boot messages), to attach to failures. */
  get consoleLog(): string {
    return this.console;
  }
}

function readChildren(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
