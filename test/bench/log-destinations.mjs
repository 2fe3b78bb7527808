// `node test/bench/log-destinations.mjs <lines> <sync|deferred|sonic-async|sonic-async-4k> [stdout]`
// (after `npm run build`): main-thread time of logging <lines> change lines in one turn of the
// event loop, as a pass's report does, into a file, or with `stdout` into fd 1 (pipe it into
// `cat > /dev/null`: a reader woken by every write, as journald is). Destinations: pino's
// synchronous one (symroute's before), DeferredLines (src/service/log.ts), and pino's
// asynchronous sonic-boom (sync: false, with and without minLength). Prints the median of 7
// rounds on stderr, and the RSS after them.
import { closeSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DeferredLines } from '../../dist/service/log.js';

const lines = Number(process.argv[2] ?? 6000);
const which = process.argv[3] ?? 'deferred';
const file = join(tmpdir(), `symroute-log-destinations-${process.pid}.log`);
const fd = process.argv[4] === 'stdout' ? 1 : openSync(file, 'w');
const destinations = {
  sync: () => pino.destination({ fd, sync: true }),
  deferred: () => new DeferredLines(fd),
  'sonic-async': () => pino.destination({ fd, sync: false }),
  'sonic-async-4k': () => pino.destination({ fd, sync: false, minLength: 4096 }),
};
const log = pino({ name: 'symroute', level: 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destinations[which]());
const logLines = (n) => {
  for (let i = 0; i < n; i++) log.info({ ifname: `n${i}` }, `added rule from 198.18.${(i >> 8) & 255}.${i & 255} lookup ${1000 + i} pref 30000 (n${i})`);
};
for (let warm = 0; warm < 3; warm++) logLines(2000);
await new Promise((resolve) => setTimeout(resolve, 200));
const times = [];
for (let round = 0; round < 7; round++) {
  const start = process.hrtime.bigint();
  logLines(lines);
  times.push(Number(process.hrtime.bigint() - start) / 1e6);
  await new Promise((resolve) => setTimeout(resolve, 100));
}
times.sort((a, b) => a - b);
const median = times[3];
console.error(
  `${which.padEnd(15)} ${lines} lines in one turn: ${median.toFixed(2)} ms on the main thread (${((median * 1000) / lines).toFixed(1)} µs a line); RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
);
process.on('exit', () => {
  if (fd !== 1) {
    closeSync(fd);
    rmSync(file);
  }
});
