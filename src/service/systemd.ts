// systemd's service notification protocol (sd_notify), spoken without libsystemd: datagrams
// of KEY=VALUE lines to $NOTIFY_SOCKET, sent by the native addon.
import type { Logger } from './log.js';
import { sendUnixDatagram } from '../native/unix.js';

export class SystemdNotifier {
  private readonly socketPath: string | undefined;
  private watchdogTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.socketPath = env.NOTIFY_SOCKET || undefined;
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${status}`);
  }

  /** RELOADING=1 must carry the monotonic time so systemd can tell reloads apart (v253+). */
  reloading(): void {
    const monotonicUsec = process.hrtime.bigint() / 1000n; // libuv's hrtime is CLOCK_MONOTONIC
    this.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec}\nSTATUS=reloading configuration`);
  }

  status(status: string): void {
    this.send(`STATUS=${status}`);
  }

  stopping(): void {
    this.stopWatchdog();
    this.send('STOPPING=1\nSTATUS=stopping');
  }

  /**
   * Pings the watchdog at half of WATCHDOG_USEC, but only while `healthy()` says the daemon
   * is making progress: a wedged daemon must be restarted, not kept alive by a timer.
   */
  startWatchdog(healthy: () => boolean, env: NodeJS.ProcessEnv = process.env): void {
    const usec = Number(env.WATCHDOG_USEC);
    const pid = env.WATCHDOG_PID ? Number(env.WATCHDOG_PID) : process.pid;
    if (!this.socketPath || !Number.isFinite(usec) || usec <= 0 || pid !== process.pid) return;
    const intervalMs = usec / 2000;
    let expected = Date.now() + intervalMs;
    this.watchdogTimer = setInterval(() => {
      const lagMs = Date.now() - expected;
      expected = Date.now() + intervalMs;
      // A timer this late means the event loop was blocked for a good part of the deadline.
      if (lagMs < intervalMs / 2 && healthy()) this.send('WATCHDOG=1');
      else this.log.warn({ lagMs }, 'not pinging the systemd watchdog: daemon is not healthy');
    }, intervalMs);
    this.watchdogTimer.unref();
  }

  private stopWatchdog(): void {
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = null;
  }

  private send(message: string): void {
    if (!this.socketPath) return;
    try {
      sendUnixDatagram(this.socketPath, message);
    } catch (error) {
      this.log.error({ err: error }, `cannot notify systemd: ${(error as Error).message}`);
    }
  }
}
