// The daemon against a scripted kernel, as the unit tests run it: its log lines and metrics
// at hand, fast retries, and settle() to wait until it has read and done everything.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { Daemon } from '../../src/control/daemon.js';
import { Metrics } from '../../src/service/metrics.js';
import { Telemetry } from '../../src/service/telemetry.js';
import type { ScriptedKernel } from './scripted-kernel.js';

export interface ScriptedDaemon {
  readonly kernel: ScriptedKernel;
  readonly daemon: Daemon;
  readonly metrics: Metrics;
  readonly lines: { level: number; msg: string }[];
}

let running: Daemon[] = [];

/** Starts a daemon on `kernel` (stopped by stopScriptedDaemons()). */
export async function startScriptedDaemon(kernel: ScriptedKernel, config: Config = defaultConfig()): Promise<ScriptedDaemon> {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const metrics = new Metrics({ version: 'test', commit: 'test' });
  const daemon = new Daemon(config, new Telemetry(pino({ level: 'debug' }, sink), metrics), kernel, { backoffStartMs: 5, backoffMaxMs: 20 });
  running.push(daemon);
  await daemon.start();
  return { kernel, daemon, metrics, lines };
}

/** For afterEach: stops every daemon started since the last call. */
export async function stopScriptedDaemons(): Promise<void> {
  for (const daemon of running) await daemon.stop(false);
  running = [];
}

/**
 * Waits until the daemon has read everything and no pass runs or is due; throws if it never
 * gets there, so that an assertion of "nothing happened" cannot pass on a daemon that did not run.
 */
export async function settle({ daemon, kernel }: Pick<ScriptedDaemon, 'daemon' | 'kernel'>): Promise<void> {
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    await daemon.idle();
    if (kernel.notifications.queued === 0 && kernel.requests.queued === 0) return;
  }
  throw new Error(
    `the daemon did not settle: ${kernel.notifications.queued} notifications and ${kernel.requests.queued} requests still queued`,
  );
}

/** A metric's value summed over the series whose labels include `labels`. */
export async function metricTotal(
  metric: { get(): Promise<{ values: { labels: object; value: number }[] }> },
  labels: object = {},
): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((n, v) => n + v.value, 0);
}
