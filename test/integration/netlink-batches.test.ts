// The addon reads datagrams in batches (native/netlink_socket.cc receive(): up to 1 MiB of
// them per call, back to back in one buffer) and readAll() strings batches together
// (src/netlink/native.ts). Judged against the real kernel, in a namespace of the test's own:
// a burst of notifications several batches long arrives whole and in order, read at once or
// a slice at a time; an overrun is reported while what was queued is still delivered, and what
// comes after it is read whole.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, REPO } from '../support/lab.js';

const run = promisify(execFile);

/**
 * Runs in the namespace: opens a socket in the IPv4 route group (`receiveBufferBytes`), has
 * `ip -batch` add `routes` routes /32 in table 77 unread, then reads them with readAll(maxBytes)
 * until a read finds nothing; prints what each read returned.
 */
const reader = (routes: number, receiveBufferBytes: number, maxBytes: number | undefined, after: number) => `
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { openNetlinkSocket } from ${JSON.stringify(join(REPO, 'dist/netlink/native.js'))};
import { decodeMessage } from ${JSON.stringify(join(REPO, 'dist/netlink/messages.js'))};
import { splitDatagram } from ${JSON.stringify(join(REPO, 'dist/netlink/codec.js'))};
const socket = openNetlinkSocket({ groups: [7], receiveBufferBytes: ${receiveBufferBytes} });
const add = (from, count) => {
  const lines = Array.from({ length: count }, (_, k) => { const i = from + k; return 'route add 203.0.' + ((i >> 8) & 255) + '.' + (i & 255) + '/32 dev lo table 77'; });
  const file = '/dev/shm/symroute-batches-' + process.pid;
  writeFileSync(file, lines.join('\\n') + '\\n');
  try { execFileSync('ip', ['-batch', file]); } finally { rmSync(file); }
};
const readUntilEmpty = () => {
  const reads = [];
  for (;;) {
    const read = ${maxBytes === undefined ? 'socket.readAll()' : `socket.readAll(${maxBytes})`};
    const routes = [];
    for (const datagram of read.datagrams) for (const raw of splitDatagram(datagram)) {
      const message = decodeMessage(raw);
      if (message.body.kind === 'route' && message.body.attributes.table === 77) routes.push(message.body.attributes.dst);
    }
    reads.push({ routes, bytes: read.datagrams.reduce((n, d) => n + d.length, 0), senders: [...new Set(read.senderPortIds)], overrun: read.overrun, truncated: read.truncated, more: read.more });
    if (read.datagrams.length === 0) return reads;
  }
};
execFileSync('ip', ['link', 'set', 'lo', 'up']);
add(0, ${routes});
const first = readUntilEmpty();
add(${routes}, ${after});
const second = readUntilEmpty();
socket.close();
console.log(JSON.stringify({ first, second }));
`;

interface Read {
  routes: string[];
  bytes: number;
  senders: number[];
  overrun: boolean;
  truncated: boolean;
  more: boolean;
}

const dst = (i: number) => `203.0.${(i >> 8) & 255}.${i & 255}`;
const range = (from: number, count: number) => Array.from({ length: count }, (_, k) => dst(from + k));

describe('netlink reads in batches', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  async function readIn(ns: string, ...args: Parameters<typeof reader>): Promise<{ first: Read[]; second: Read[] }> {
    const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', reader(...args)], { maxBuffer: 64 << 20 });
    return JSON.parse(stdout) as { first: Read[]; second: Read[] };
  }

  it('delivers a burst several batches long whole and in order, at once or a slice at a time', async () => {
    lab = new Lab();
    const ns = await lab.namespace('b');
    // 50000 notifications of 52 bytes: ~2.5 MiB, two batches and more.
    const whole = await readIn(ns, 50_000, 128 << 20, undefined, 0);
    expect(whole.first[0]!.bytes).toBeGreaterThan(1 << 20);
    expect(whole.first.flatMap((r) => r.routes)).toEqual(range(0, 50_000));
    expect(whole.first.slice(0, -1).every((r) => !r.overrun && !r.truncated && r.senders.join() === '0' && r.more === false)).toBe(true);

    const sliced = await readIn(await lab.namespace('s'), 50_000, 128 << 20, 64 * 1024, 0);
    const reads = sliced.first.slice(0, -1);
    expect(reads.flatMap((r) => r.routes)).toEqual(range(0, 50_000));
    // Each slice stops at the first datagram that reaches the limit: at most one datagram past it.
    for (const read of reads.slice(0, -1)) {
      expect(read.more).toBe(true);
      expect(read.bytes).toBeGreaterThanOrEqual(64 * 1024);
      expect(read.bytes).toBeLessThan(64 * 1024 + 4096);
    }
  });

  it('reports an overrun, still delivers what was queued, and reads what comes after it whole', async () => {
    lab = new Lab();
    const ns = await lab.namespace('o');
    const { first, second } = await readIn(ns, 20_000, 256 * 1024, undefined, 100);
    expect(first[0]!.overrun).toBe(true);
    const delivered = first.flatMap((r) => r.routes);
    expect(delivered.length).toBeGreaterThan(0);
    expect(delivered.length).toBeLessThan(20_000);
    // What was queued when the buffer overflowed, in order: the first notifications.
    expect(delivered).toEqual(range(0, delivered.length));
    expect(second.every((r) => !r.overrun)).toBe(true);
    expect(second.flatMap((r) => r.routes)).toEqual(range(20_000, 100));
  });
});
