// Reachability probe, run inside a namespace with `ip netns exec` by `symroute demo` and the
// integration tests:  node dist/probe.js <timeoutMs> <address> [<address>...]
// prints {"<address>": true|false, ...}. An address counts as reachable when a TCP connection
// to it completes or is refused: either way the target's reply found its way back, which is
// what symroute is about. A timeout means the request or the reply was dropped.
import { connect } from 'node:net';

const PORT = 9; // discard: nothing listens, so the answer is a RST

function probe(address: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port: PORT });
    const done = (reachable: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reachable);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => done(true));
    socket.on('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED'));
  });
}

const [timeoutText, ...targets] = process.argv.slice(2);
const results = await Promise.all(targets.map((target) => probe(target, Number(timeoutText))));
process.stdout.write(`${JSON.stringify(Object.fromEntries(targets.map((t, i) => [t, results[i]])))}\n`);
