// The control channel: an abstract AF_UNIX stream socket, @symroute, that `symroute run`
// binds before it touches the kernel. Abstract names belong to the network namespace and
// vanish with the process that bound them — also after kill -9, with nothing to clean up —
// so the socket is the one-daemon-per-namespace guard as well: a second `run` finds the name
// taken and asks the first who it is.
//
// Protocol, one JSON object per line. The daemon greets every connection with
// {"symroute":"<version>","pid":<pid>}. The client sends one request, {"request":"reload"};
// the daemon answers {"reload":"applied","summary":"…"} or {"reload":"rejected",
// "problems":["file:line: …"]}, or {"error":"…"} for anything it does not take, and closes.
//
// Who may ask: every process in the network namespace can connect to an abstract socket.
// Everyone gets the greeting (a version and a pid, which `ss -xp` shows root anyway);
// requests are taken only from root and from the daemon's own user — under systemd that is
// the service's dynamic user, which `systemctl reload` runs ExecReload= as — checked with the
// kernel's SO_PEERCRED, so no other local user can make the daemon re-read its file.
import { createServer, Socket, type Server } from 'node:net';
import { constants } from 'node:os';
import { connectAbstract, listenAbstract, peerCredentials, type PeerCredentials } from '../netlink/native.js';
import type { Logger } from './log.js';

/** Bound and connected by the native addon, which (unlike Node.js 20) does not pad the name. */
const ABSTRACT_NAME = 'symroute';
/** As ss(8) prints it. */
export const CONTROL_SOCKET_NAME = `@${ABSTRACT_NAME}`;

const MAX_LINE_BYTES = 1024;
/** How long a connection may take to send its request (not to wait for the answer). */
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 16;
/** How long a second `run` waits for the first to say who it is. */
const GREETING_TIMEOUT_MS = 5_000;

export type ReloadVerdict = { applied: true; summary: string } | { applied: false; problems: string[] };

interface Greeting {
  symroute: string;
  pid: number;
}

/** Another symroute already holds the control socket in this network namespace. */
export class AlreadyRunning extends Error {
  override readonly name = 'AlreadyRunning';
  constructor(readonly pid: number | undefined) {
    super(
      pid === undefined
        ? `another symroute holds ${CONTROL_SOCKET_NAME} in this network namespace but did not say who it is`
        : `symroute is already running in this network namespace (pid ${pid}); only one may run per namespace`,
    );
  }
}

export class ControlServer {
  /** The service's reload (its Reloader, shared with SIGHUP); null under --once. */
  reload: (() => Promise<ReloadVerdict>) | null = null;

  private constructor(
    private readonly server: Server,
    private readonly version: string,
    private readonly log: Logger,
  ) {
    server.maxConnections = MAX_CONNECTIONS;
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', (error) => log.error({ err: error }, `control socket ${CONTROL_SOCKET_NAME}: ${error.message}`));
  }

  /** Binds @symroute, or throws AlreadyRunning naming the process that has it. */
  static async listen(version: string, log: Logger): Promise<ControlServer> {
    for (let attempt = 1; ; attempt++) {
      let fd: number;
      try {
        fd = listenAbstract(ABSTRACT_NAME);
      } catch (error) {
        const errno = (error as { errno?: number }).errno;
        if (errno !== constants.errno.EADDRINUSE) throw new Error(`cannot bind the control socket ${CONTROL_SOCKET_NAME}: ${(error as Error).message}`);
        const other = await exchange(null, GREETING_TIMEOUT_MS);
        // Gone between our bind and our connect: the name is free now, so try once more.
        if (other === null && attempt < 2) continue;
        throw new AlreadyRunning(other?.greeting?.pid);
      }
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return new ControlServer(server, version, log);
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
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
    const ownUid = process.getuid?.() ?? 0;
    if (!peer || (peer.uid !== 0 && peer.uid !== ownUid)) {
      const allowed = ownUid === 0 ? 'only root' : `only root and uid ${ownUid}`;
      this.log.warn({ peer }, `refused a reload request from ${who}: ${allowed} may ask`);
      return answer({ error: `permission denied: ${allowed} may ask for a reload` });
    }
    if (!this.reload) return answer({ error: 'this symroute runs --once and takes no reloads' });
    this.log.info({ peer }, `reload requested over ${CONTROL_SOCKET_NAME} by ${who}`);
    const verdict = await this.reload();
    answer(verdict.applied ? { reload: 'applied', summary: verdict.summary } : { reload: 'rejected', problems: verdict.problems });
  }
}

function isReloadRequest(line: string): boolean {
  try {
    const request: unknown = JSON.parse(line);
    return typeof request === 'object' && request !== null && JSON.stringify(request) === '{"request":"reload"}';
  } catch {
    return false;
  }
}

/** SO_PEERCRED of an accepted connection; null when the descriptor cannot be had (fail closed). */
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

export type ReloadOutcome = ReloadVerdict | { applied: false; error: string } | null;

/**
 * Asks the daemon of this network namespace to reload its config and waits for the verdict.
 * null: no daemon is running here.
 */
export async function requestReload(): Promise<ReloadOutcome> {
  const result = await exchange({ request: 'reload' }, null);
  if (result === null) return null;
  const reply = result.reply as { reload?: string; summary?: string; problems?: string[]; error?: string } | undefined;
  if (reply?.reload === 'applied') return { applied: true, summary: String(reply.summary) };
  if (reply?.reload === 'rejected' && Array.isArray(reply.problems)) return { applied: false, problems: reply.problems.map(String) };
  if (reply?.error) return { applied: false, error: reply.error };
  return { applied: false, error: 'the daemon closed the connection without a verdict (stopping?)' };
}

/**
 * Connects to @symroute, reads the greeting, sends `request` (if any) and reads the reply.
 * null when nothing listens. A timeout, if given, bounds the whole exchange.
 */
function exchange(request: object | null, timeoutMs: number | null): Promise<{ greeting?: Greeting; reply?: unknown } | null> {
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = connectAbstract(ABSTRACT_NAME);
    } catch (error) {
      if ((error as { errno?: number }).errno === constants.errno.ECONNREFUSED) return resolve(null);
      return reject(new Error(`cannot connect to ${CONTROL_SOCKET_NAME}: ${(error as Error).message}`));
    }
    const socket = new Socket({ fd, readable: true, writable: true });
    const lines: unknown[] = [];
    let buffered = '';
    const finish = () => {
      socket.destroy();
      const [greeting, reply] = lines;
      resolve({ ...(isGreeting(greeting) ? { greeting } : {}), ...(reply !== undefined ? { reply } : {}) });
    };
    if (timeoutMs !== null) socket.setTimeout(timeoutMs, finish);
    if (request) socket.write(`${JSON.stringify(request)}\n`);
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (let newline; (newline = buffered.indexOf('\n')) >= 0; buffered = buffered.slice(newline + 1)) {
        try {
          lines.push(JSON.parse(buffered.slice(0, newline)));
        } catch {
          lines.push(undefined);
        }
      }
      if (lines.length >= (request ? 2 : 1)) finish();
    });
    socket.on('end', finish);
    // The daemon went away mid-exchange: what it said so far is the answer.
    socket.on('error', finish);
  });
}

function isGreeting(value: unknown): value is Greeting {
  return typeof value === 'object' && value !== null && typeof (value as Greeting).pid === 'number';
}
