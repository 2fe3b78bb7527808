// Reachability probe, run inside a namespace with `ip netns exec` by `symroute demo` and the
// integration tests:  node dist/probe.js <timeoutMs> [--from <source>] <address> [<address>...]
// (--from binds the source address first, as a server answering from it would) prints {"<address>": true|false, ...}. An address counts as reachable when a TCP connection
// to it completes or is refused: either way the target's reply found its way back, which is
// what symroute is about. A timeout means the request or the reply was dropped.
import { connect } from 'node:net';

const PORT = 9; // discard: nothing listens, so the answer is a RST

function probe(address: string, timeoutMs: number, localAddress: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port: PORT, ...(localAddress ? { localAddress } : {}) });
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

const [timeoutText, ...rest] = process.argv.slice(2);
const source = rest[0] === '--from' ? rest[1] : undefined;
const targets = source === undefined ? rest : rest.slice(2);
const results = await Promise.all(targets.map((target) => probe(target, Number(timeoutText), source)));
process.stdout.write(`${JSON.stringify(Object.fromEntries(targets.map((t, i) => [t, results[i]])))}\n`);
