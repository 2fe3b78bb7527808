// The control channel, and the guard that lets one symroute run per network namespace.
//
// Both live in a runtime directory that only root and the service's user can write: systemd's
// RuntimeDirectory= (/run/symroute, owned by the service's dynamic user; systemd passes its
// path in $RUNTIME_DIRECTORY to ExecStart= and ExecReload= alike), else /run/symroute made by
// root. /run is shared between network namespaces, so the names carry the namespace's inode:
// net-<inode>.lock and net-<inode>.sock. (An abstract socket name needs no directory, but any
// local user can bind it first, answer in the daemon's place, and keep it from starting.)
//
// The guard is flock(2) on the .lock file, taken before the kernel is touched; the holder
// writes its pid there, so a second `run` names it. The kernel releases the lock with the
// process, kill -9 included, so nothing left behind blocks a restart: whoever takes the lock
// replaces a stale socket.
//
// Protocol, one JSON object per line. The daemon greets every connection with
// {"symroute":"<version>","pid":<pid>}. The client sends one request, {"request":"reload"};
// the daemon answers {"reload":"applied","summary":"…"} or {"reload":"rejected",
// "problems":["file:line: …"]}, or {"error":"…"} for anything it does not take, and closes.
//
// Who may talk to whom, each checked on both sides:
// - The socket is mode 0600: its owner (the daemon's user) and root can connect. The daemon
//   checks the peer's SO_PEERCRED again and takes requests only from root and its own user.
// - The client talks only to a socket in a directory nobody else can write (every ancestor
//   owned by root, none writable by others unless sticky), and believes an answer only from
//   root, its own user or the directory's owner (the service's user), checked with SO_PEERCRED.
import { chmodSync, closeSync, constants as fsConstants, ftruncateSync, mkdirSync, openSync, readFileSync, realpathSync, rmSync, statSync, writeSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { lockExclusive, peerCredentials, type PeerCredentials } from '../native/unix.js';
import type { Logger } from './log.js';

export const DEFAULT_RUNTIME_DIRECTORY = '/run/symroute';

const MAX_LINE_BYTES = 1024;
/** How long a connection may take to send its request (not to wait for the answer). */
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 16;
/** How long a second `run` waits for the lock's holder to have written its pid. */
const HOLDER_PID_WAIT_MS = 2_000;
/** sockaddr_un.sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export type ReloadVerdict = { applied: true; summary: string } | { applied: false; problems: string[] };

interface Greeting {
  symroute: string;
  pid: number;
}

/** Where this network namespace's daemon keeps its lock and its socket. */
export interface ControlPaths {
  readonly directory: string;
  readonly lock: string;
  readonly socket: string;
}

/** $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=; the first, if it names several), else /run/symroute. */
export function controlPaths(env: NodeJS.ProcessEnv = process.env): ControlPaths {
  const directory = env.RUNTIME_DIRECTORY?.split(':')[0] || DEFAULT_RUNTIME_DIRECTORY;
  if (!isAbsolute(directory)) throw new ControlUnavailable(`RUNTIME_DIRECTORY must be an absolute path, got ${JSON.stringify(directory)}`);
  const namespace = `net-${statSync('/proc/self/ns/net').ino}`;
  return { directory, lock: join(directory, `${namespace}.lock`), socket: join(directory, `${namespace}.sock`) };
}

/** The control channel cannot be set up safely; the message says why and where. */
export class ControlUnavailable extends Error {
  override readonly name = 'ControlUnavailable';
}

/** Another symroute holds the guard of this network namespace. */
export class AlreadyRunning extends ControlUnavailable {
  constructor(
    readonly pid: number | undefined,
    lock: string,
  ) {
    super(
      pid === undefined
        ? `another symroute holds ${lock} in this network namespace but has not written its pid there`
        : `symroute is already running in this network namespace (pid ${pid}); only one may run per namespace`,
    );
  }
}

export class ControlServer {
  /** The service's reload (its Reloader, shared with SIGHUP); null under --once. */
  reload: (() => Promise<ReloadVerdict>) | null = null;

  private constructor(
    private readonly server: Server,
    private readonly lockFd: number,
    private readonly paths: ControlPaths,
    private readonly version: string,
    private readonly log: Logger,
  ) {
    server.maxConnections = MAX_CONNECTIONS;
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', (error) => log.error({ err: error }, `control socket ${paths.socket}: ${error.message}`));
  }

  /**
   * Takes this namespace's guard and listens on its socket. Throws AlreadyRunning naming the
   * holder, or ControlUnavailable when the runtime directory cannot be trusted or used.
   */
  static async listen(version: string, log: Logger, paths = controlPaths()): Promise<ControlServer> {
    ensureOwnDirectory(paths.directory);
    if (Buffer.byteLength(paths.socket) > MAX_SOCKET_PATH_BYTES) {
      throw new ControlUnavailable(`the control socket's path ${paths.socket} is longer than a socket address holds (${MAX_SOCKET_PATH_BYTES} bytes)`);
    }
    const lockFd = fileOperation(`cannot open the lock ${paths.lock}`, () =>
      openSync(paths.lock, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o644),
    );
    try {
      if (!lockExclusive(lockFd)) throw new AlreadyRunning(await holderPid(paths.lock), paths.lock);
      ftruncateSync(lockFd, 0);
      writeSync(lockFd, `${process.pid}\n`, 0);
      // Left by a daemon that was killed: the lock is ours, so the name is too.
      rmSync(paths.socket, { force: true });
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(paths.socket, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // Between bind and here the mode follows the umask; SO_PEERCRED still guards requests.
      chmodSync(paths.socket, 0o600);
      return new ControlServer(server, lockFd, paths, version, log);
    } catch (error) {
      closeSync(lockFd);
      if (error instanceof ControlUnavailable) throw error;
      throw new ControlUnavailable(`cannot set up the control socket ${paths.socket}: ${(error as Error).message}`);
    }
  }

  /** Stops listening and then releases the guard: held until everything else is done. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.paths.socket, { force: true });
    closeSync(this.lockFd);
  }

  private accept(socket: Socket): void {
    // A client that goes away is its own business; the answer is simply not delivered.
    socket.on('error', () => socket.destroy());
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    socket.write(`${JSON.stringify({ symroute: this.version, pid: process.pid } satisfies Greeting)}\n`);
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0 && buffered.length <= MAX_LINE_BYTES) return;
      socket.off('data', onData);
      socket.setTimeout(0);
      void this.handle(socket, newline < 0 ? null : buffered.slice(0, newline));
    };
    socket.on('data', onData);
  }

  private async handle(socket: Socket, line: string | null): Promise<void> {
    const answer = (reply: object): void => void socket.end(`${JSON.stringify(reply)}\n`);
    const peer = credentialsOf(socket);
    const who = peer ? `pid ${peer.pid}, uid ${peer.uid}` : 'unknown peer';
    if (line === null || !isReloadRequest(line)) {
      this.log.warn({ peer }, `refused a control request from ${who}: not a known request`);
      return answer({ error: 'unknown request; the only one is {"request":"reload"}' });
    }
    const ownUid = ownUserId();
    if (!peer || (peer.uid !== 0 && peer.uid !== ownUid)) {
      this.log.warn({ peer }, `refused a reload request from ${who}: ${whoMayAsk(ownUid)} may ask`);
      return answer({ error: `permission denied: ${whoMayAsk(ownUid)} may ask for a reload` });
    }
    if (!this.reload) return answer({ error: 'this symroute runs --once and takes no reloads' });
    this.log.info({ peer }, `reload requested over ${this.paths.socket} by ${who}`);
    const verdict = await this.reload();
    answer(verdict.applied ? { reload: 'applied', summary: verdict.summary } : { reload: 'rejected', problems: verdict.problems });
  }
}

function ownUserId(): number {
  return process.getuid?.() ?? 0;
}

function whoMayAsk(daemonUid: number): string {
  return daemonUid === 0 ? 'only root' : `only root and uid ${daemonUid}`;
}

function isReloadRequest(line: string): boolean {
  try {
    const request: unknown = JSON.parse(line);
    return typeof request === 'object' && request !== null && JSON.stringify(request) === '{"request":"reload"}';
  } catch {
    return false;
  }
}

/** SO_PEERCRED of a connected socket; null when the descriptor cannot be had (fail closed). */
function credentialsOf(socket: Socket): PeerCredentials | null {
  // net.Socket keeps its descriptor on the internal pipe handle; Node.js offers no public way.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  try {
    return peerCredentials(fd);
  } catch {
    return null;
  }
}

function fileOperation<T>(what: string, operation: () => T): T {
  try {
    return operation();
  } catch (error) {
    throw new ControlUnavailable(`${what}: ${(error as Error).message}`);
  }
}

/** Creates the runtime directory if missing (its parent must exist), then makes sure it is safe for the daemon. */
function ensureOwnDirectory(directory: string): void {
  try {
    mkdirSync(directory, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new ControlUnavailable(
        `cannot create the runtime directory ${directory}: ${(error as Error).message}` +
          ' (under systemd, RuntimeDirectory=symroute makes it; in a container, mount a writable directory there)',
      );
    }
  }
  const ownUid = ownUserId();
  const why = distrust(directory, (uid) => uid === 0 || uid === ownUid);
  if (why) throw new ControlUnavailable(`refusing the runtime directory ${directory}: ${why}`);
}

/**
 * Why no one but root and the directory's rightful owner is guaranteed to control what is in
 * `directory`, or null when that holds: the directory not writable by group or others, owned by
 * a uid `mayOwn` accepts; every ancestor owned by root (or by us), and writable by group or
 * others only with the sticky bit (as /tmp), which keeps others from renaming what is not theirs.
 */
function distrust(directory: string, mayOwn: (uid: number) => boolean): string | null {
  let path: string;
  try {
    path = realpathSync(directory);
  } catch (error) {
    return (error as Error).message;
  }
  const ownUid = ownUserId();
  const info = statSync(path);
  if (!info.isDirectory()) return `${path} is not a directory`;
  if (!mayOwn(info.uid)) return `${path} belongs to uid ${info.uid}`;
  if (info.mode & 0o022) return `${path} is writable by others than its owner (mode ${modeOf(info.mode)})`;
  for (let ancestor = dirname(path); ; ancestor = dirname(ancestor)) {
    const above = statSync(ancestor);
    if (above.uid !== 0 && above.uid !== ownUid) return `${ancestor} belongs to uid ${above.uid}`;
    if (above.mode & 0o022 && !(above.mode & 0o1000)) return `${ancestor} is writable by others than its owner (mode ${modeOf(above.mode)})`;
    if (ancestor === '/') return null;
  }
}

function modeOf(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

/** The pid the lock's holder wrote, waiting briefly for a holder that has only just taken it. */
async function holderPid(lock: string): Promise<number | undefined> {
  for (const deadline = Date.now() + HOLDER_PID_WAIT_MS; ; ) {
    const pid = Number.parseInt(readFileSync(lock, 'utf8'), 10);
    if (Number.isInteger(pid) && pid > 0) return pid;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * What came of a reload request. null: no daemon runs in this namespace. `refused`: the daemon
 * (or the socket's permissions) turned the request down. `untrusted`: the client would not talk
 * to what holds the socket, so nothing was asked.
 */
export type ReloadOutcome = ReloadVerdict | { applied: false; refused: string } | { applied: false; untrusted: string } | null;

/** Asks the daemon of this network namespace to reload its config and waits for the verdict. */
export async function requestReload(paths = controlPaths()): Promise<ReloadOutcome> {
  const result = await exchange(paths, { request: 'reload' });
  if (result === null || 'untrusted' in result || 'refused' in result) return result;
  const reply = result.reply as { reload?: string; summary?: string; problems?: string[]; error?: string } | undefined;
  if (reply?.reload === 'applied') return { applied: true, summary: String(reply.summary) };
  if (reply?.reload === 'rejected' && Array.isArray(reply.problems)) return { applied: false, problems: reply.problems.map(String) };
  if (reply?.error) return { applied: false, refused: reply.error };
  return { applied: false, refused: 'the daemon closed the connection without a verdict (stopping?)' };
}

type Exchanged = { greeting?: Greeting; reply?: unknown } | { applied: false; untrusted: string } | { applied: false; refused: string };

/**
 * Connects to the control socket, makes sure root or the service's user holds it, sends
 * `request` and reads the greeting and the reply. null when nothing listens.
 */
function exchange(paths: ControlPaths, request: object): Promise<Exchanged | null> {
  const untrusted = (why: string) => ({ applied: false as const, untrusted: `not talking to ${paths.socket}: ${why}; nothing was asked` });
  let directoryOwner: number;
  try {
    directoryOwner = statSync(paths.directory).uid;
  } catch {
    return Promise.resolve(null); // no runtime directory: no daemon has ever run here
  }
  const why = distrust(paths.directory, () => true);
  if (why) return Promise.resolve(untrusted(why));
  return new Promise((resolve) => {
    const socket = connect(paths.socket);
    const lines: unknown[] = [];
    let buffered = '';
    let settled = false;
    const settle = (result: Exchanged | null) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    const finish = () => {
      const [greeting, reply] = lines;
      settle({ ...(isGreeting(greeting) ? { greeting } : {}), ...(reply !== undefined ? { reply } : {}) });
    };
    socket.on('connect', () => {
      const peer = credentialsOf(socket);
      const trusted = [0, ownUserId(), directoryOwner];
      if (!peer) return settle(untrusted('cannot tell who holds it (SO_PEERCRED)'));
      if (!trusted.includes(peer.uid)) {
        return settle(untrusted(`it is held by uid ${peer.uid} (pid ${peer.pid}), neither root nor the service's user (uid ${directoryOwner})`));
      }
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (let newline; (newline = buffered.indexOf('\n')) >= 0; buffered = buffered.slice(newline + 1)) {
        try {
          lines.push(JSON.parse(buffered.slice(0, newline)));
        } catch {
          lines.push(undefined);
        }
      }
      if (lines.length >= 2) finish();
    });
    socket.on('end', finish);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // Nothing listens: no socket, or one left by a daemon that was killed.
      if (!settled && lines.length === 0 && (error.code === 'ENOENT' || error.code === 'ECONNREFUSED')) return settle(null);
      if (!settled && lines.length === 0 && error.code === 'EACCES') {
        return settle({ applied: false, refused: `permission denied: ${whoMayAsk(ownerOf(paths.socket))} may ask for a reload` });
      }
      // The daemon went away mid-exchange: what it said so far is the answer.
      finish();
    });
  });
}

function ownerOf(path: string): number {
  try {
    return statSync(path).uid;
  } catch {
    return 0;
  }
}

function isGreeting(value: unknown): value is Greeting {
  return typeof value === 'object' && value !== null && typeof (value as Greeting).pid === 'number';
}
