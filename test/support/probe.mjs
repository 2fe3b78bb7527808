// Reachability probe, run inside a test namespace with `ip netns exec`:
//   node probe.mjs <timeoutMs> <address> [<address>...]
// prints {"<address>": true|false, ...}. An address counts as reachable when a TCP connection
// to it completes or is refused: either way the target's reply found its way back, which is
// what symroute is about. A timeout means the request or the reply was dropped.
import { connect } from 'node:net';

const [timeoutText, ...targets] = process.argv.slice(2);
const timeoutMs = Number(timeoutText);
const PORT = 9; // discard: nothing listens, so the answer is a RST

function probe(address) {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port: PORT });
    const done = (reachable) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reachable);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => done(true));
    socket.on('error', (error) => done(error.code === 'ECONNREFUSED'));
  });
}

const results = await Promise.all(targets.map(probe));
process.stdout.write(JSON.stringify(Object.fromEntries(targets.map((t, i) => [t, results[i]]))) + '\n');
