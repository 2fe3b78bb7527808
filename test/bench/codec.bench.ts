// Decode and encode throughput of the netlink codec on real kernel dumps (test/fixtures).
import { readFileSync } from 'node:fs';
import { bench, describe } from 'vitest';
import { splitDatagram } from '../../src/netlink/codec.js';
import { decodeMessage, encodeRequest, isRtnlBody } from '../../src/netlink/messages.js';

const routeDump = readFileSync(new URL('../fixtures/route-dump-0.bin', import.meta.url));
const ruleDump = readFileSync(new URL('../fixtures/rule-dump-0.bin', import.meta.url));
const routeBodies = splitDatagram(routeDump).map(decodeMessage).map((m) => m.body).filter(isRtnlBody);

describe('codec', () => {
  bench(`decode a route dump datagram (${routeBodies.length} messages)`, () => {
    splitDatagram(routeDump).map(decodeMessage);
  });
  bench('decode a rule dump datagram', () => {
    splitDatagram(ruleDump).map(decodeMessage);
  });
  bench(`encode ${routeBodies.length} route requests`, () => {
    routeBodies.forEach((body, seq) => encodeRequest({ type: 24, flags: 0x601, seq, portId: 1 }, body));
  });
});
