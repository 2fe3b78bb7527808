// SIGTERM/SIGINT for `symroute run`, caught from the process's first moment. Loading the rest
// of symroute (pino, prom-client, yaml, zod) takes up to a second on a busy host, and an
// unhandled SIGTERM kills the process by the signal: a `systemctl stop` during start-up would
// end it mid-write, with on_exit ignored. cli.ts imports this module before any other (ES
// modules evaluate in import order), so the handlers exist before anything else runs; the
// service asks `stopRequested()` when it is ready to act on them.
//
// Other commands keep the default behaviour (Ctrl-C ends `plan` at once); `demo` installs its
// own handlers.
const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

let received: StopSignal | null = null;
const waiting: Array<(signal: StopSignal) => void> = [];

if (process.argv[2] === 'run') {
  for (const signal of STOP_SIGNALS) {
    // Kept installed for good: a second signal while stopping must not kill the process
    // half-way through removing what it owns.
    process.on(signal, () => {
      received ??= signal;
      for (const resolve of waiting.splice(0)) resolve(received);
    });
  }
}

/** The first SIGTERM/SIGINT of `symroute run`, whenever it came (also before this call). */
export function stopRequested(): Promise<StopSignal> {
  return received ? Promise.resolve(received) : new Promise((resolve) => waiting.push(resolve));
}
