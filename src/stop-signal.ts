// SIGTERM/SIGINT for `symroute run`, caught from the process's first moment. Loading the rest
// of symroute (pino, prom-client, yaml, zod, the addon) takes up to a second on a busy host,
// and an unhandled SIGTERM kills the process by the signal: a `systemctl stop` during start-up
// would end it mid-write, with on_exit ignored. So `run` calls catchStopSignals() before it
// loads anything else, and the service asks the promise when it is ready to act on it.
// (Other commands keep the default: Ctrl-C ends `plan` at once; `demo` has its own handlers.)
export type StopSignal = 'SIGTERM' | 'SIGINT';

/** Installs the handlers; the promise resolves with the first SIGTERM/SIGINT, whenever it comes. */
export function catchStopSignals(): Promise<StopSignal> {
  return new Promise((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      // Kept installed for good: a second signal while stopping must not kill the process
      // half-way through removing what it owns.
      process.on(signal, () => resolve(signal));
    }
  });
}
