// `symroute run`: the daemon as a service — metrics endpoint, systemd notifications,
// SIGHUP reloads and clean shutdown around the control loop in daemon.ts.
import type { BuildInfo } from '../build.js';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../config/config.js';
import { Coalescer } from '../control/coalescer.js';
import { Daemon } from '../control/daemon.js';
import { ConfigFileWatcher } from './config-watch.js';
import { createLogger, type Logger } from './log.js';
import type { LogFormat } from '../config/defaults.js';
import { Metrics, MetricsServer } from './metrics.js';
import { AlreadyRunning, ControlServer, ControlUnavailable, type ReloadVerdict } from './control.js';
import type { StopSignal } from '../stop-signal.js';
import { SystemdNotifier } from './systemd.js';
import { Telemetry } from './telemetry.js';

const ONCE_ATTEMPTS = 3;
/** The kernel answers a netlink ping in microseconds; this must stay below the liveness probe's timeout (deploy/kubernetes: 5 s). */
const LIVENESS_TIMEOUT_MS = 2000;

export interface RunOptions {
  readonly configPath: string | undefined;
  readonly config: Config;
  readonly once: boolean;
  /** Reload whenever the config file changes, as on SIGHUP. */
  readonly watchConfig: boolean;
  readonly logLevel: Config['log']['level'] | undefined;
  readonly build: BuildInfo;
  readonly logFormat: LogFormat | undefined;
  /** The first SIGTERM/SIGINT, caught by the command line before anything was loaded. */
  readonly stopRequested: Promise<StopSignal>;
}

/**
 * Runs until SIGTERM/SIGINT (or, with `once`, until the first convergence); returns the exit
 * code. A stop during start-up is a stop like any other: exit 0, on_exit honoured.
 */
export async function runService(options: RunOptions): Promise<number> {
  const log = createLogger(options.logLevel ?? options.config.log.level, options.logFormat);
  // Before anything touches the kernel: one symroute per network namespace.
  let control: ControlServer;
  try {
    control = await ControlServer.listen(options.build.version, log);
  } catch (error) {
    if (!(error instanceof ControlUnavailable)) throw error;
    log.error(error instanceof AlreadyRunning ? { pid: error.pid } : {}, error.message);
    return 1;
  }
  try {
    return await serve(options, log, control);
  } finally {
    // Last: the guard is held until everything, removal included, is done.
    await control.close();
  }
}

async function serve(options: RunOptions, log: Logger, control: ControlServer): Promise<number> {
  let config = options.config;
  const metrics = new Metrics(options.build);
  const daemon = new Daemon(config, new Telemetry(log, metrics));
  metrics.stageTotals = () => daemon.stageTotals;
  // A stop may come at any moment of start-up (the command line caught it from the first): the
  // pass under way finishes, no other starts, and the stop below honours on_exit as always.
  let stopSignal: StopSignal | null = null;
  const stop = options.stopRequested.then((signal) => {
    stopSignal = signal;
    daemon.interrupt();
    return signal;
  });
  if (options.once) {
    let inSync;
    try {
      inSync = await daemon.converge(ONCE_ATTEMPTS);
    } finally {
      await daemon.stop(stopSignal !== null && config.onExit === 'remove');
    }
    if (stopSignal !== null) {
      log.info({ signal: stopSignal }, 'stopped before converging');
      return 0;
    }
    if (!inSync) log.error(`could not converge after ${ONCE_ATTEMPTS} attempts: ${daemon.summary()}`);
    return inSync ? 0 : 1;
  }

  const notifier = new SystemdNotifier(log);
  const server = new MetricsServer(
    metrics,
    { ready: () => daemon.inSync, liveness: () => daemon.liveness(LIVENESS_TIMEOUT_MS), conflicts: () => daemon.conflictList },
    log,
  );
  const reloader = new Reloader(async (): Promise<ReloadVerdict> => {
    notifier.reloading();
    let verdict: ReloadVerdict;
    try {
      const next = loadConfig(options.configPath);
      await daemon.reload(next);
      log.level = options.logLevel ?? next.log.level; // --log-level outranks the file
      if (JSON.stringify(next.metrics) !== JSON.stringify(config.metrics)) await server.listen(next.metrics.listen);
      config = next;
      metrics.configReloads.inc({ result: 'success' });
      metrics.configLastReloadSuccessful.set(1);
      metrics.configLastReloadSuccess.set(Date.now() / 1000);
      log.info(`reloaded configuration${options.configPath ? ` from ${options.configPath}` : ''}: ${daemon.summary()}`);
      verdict = { applied: true, summary: daemon.summary() };
    } catch (error) {
      metrics.configReloads.inc({ result: 'failure' });
      metrics.configLastReloadSuccessful.set(0);
      const problems = error instanceof ConfigError ? error.problems : [(error as Error).message];
      for (const problem of problems) log.error(`config reload rejected, keeping the running config: ${problem}`);
      verdict = { applied: false, problems };
    }
    notifier.ready(daemon.summary());
    return verdict;
  }, log);
  // `symroute reload` takes exactly the path SIGHUP takes, and waits for its verdict.
  control.reload = () => reloader.request();
  // Installed before READY=1: systemd may send SIGHUP as soon as it sees the service up, and
  // an unhandled SIGHUP would kill the process.
  process.on('SIGHUP', () => void reloader.request());
  // Started before the first pass, so that a change made while it runs is not missed.
  const fileWatcher = options.watchConfig
    ? new ConfigFileWatcher(options.configPath ?? DEFAULT_CONFIG_PATH, () => void reloader.request(), log)
    : null;

  try {
    await server.listen(config.metrics.listen);
    await daemon.start();
  } catch (error) {
    // Close the sockets and the server, or their handles would keep the process alive.
    fileWatcher?.stop();
    await server.close();
    await daemon.stop(false);
    throw error;
  }
  if (stopSignal === null) {
    daemon.onConverged = () => notifier.status(daemon.summary());
    notifier.ready(daemon.summary());
    // Only now: a reload's RELOADING=1 … READY=1 must follow the first READY=1.
    reloader.enable();
    // A pass that takes longer than the whole watchdog period means something is wedged.
    notifier.startWatchdog(() => daemon.healthy(Number(process.env.WATCHDOG_USEC ?? 0) / 1000));
    log.info({ onExit: config.onExit }, `running: ${daemon.summary()}`);
  }

  const signal = await stop;
  log.info({ signal }, config.onExit === 'remove' ? 'stopping, removing everything symroute owns' : 'stopping, leaving rules and routes in place');
  notifier.stopping();
  fileWatcher?.stop();
  await reloader.drain();
  await server.close();
  await daemon.stop(config.onExit === 'remove');
  return 0;
}

/**
 * Serialises reloads and coalesces storms: however many requests (SIGHUP, `symroute reload`,
 * a changed file) arrive while one reload runs, exactly one more follows it, reading the file
 * as it is by then, and each request's promise gets the verdict of the first reload that
 * starts after it. Reloads asked for before the first convergence wait for it.
 */
class Reloader {
  private enabled = false;
  private readonly reloads = new Coalescer(() => this.reloadOnce(), () => this.enabled);
  private waiting: Array<(verdict: ReloadVerdict) => void> = [];

  constructor(
    private readonly reload: () => Promise<ReloadVerdict>,
    private readonly log: Logger,
  ) {}

  request(): Promise<ReloadVerdict> {
    const verdict = new Promise<ReloadVerdict>((resolve) => this.waiting.push(resolve));
    this.reloads.request();
    return verdict;
  }

  enable(): void {
    this.enabled = true;
    this.reloads.kick();
  }

  /** Lets a reload under way finish; requests still waiting are answered that none will come. */
  async drain(): Promise<void> {
    this.enabled = false;
    await this.reloads.idle();
    for (const resolve of this.waiting.splice(0)) resolve({ applied: false, problems: ['symroute is stopping'] });
  }

  private async reloadOnce(): Promise<void> {
    const waiting = this.waiting.splice(0);
    let verdict: ReloadVerdict;
    try {
      verdict = await this.reload();
    } catch (error) {
      this.log.error({ err: error }, `reload failed: ${(error as Error).message}`);
      verdict = { applied: false, problems: [`reload failed: ${(error as Error).message}`] };
    }
    for (const resolve of waiting) resolve(verdict);
  }
}
