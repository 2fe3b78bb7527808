// readAll() as the addon's batches make it (src/netlink/native.ts readBatches): datagrams of
// several receive() calls strung together in order with their senders, an overrun or a cut
// datagram in any batch reported, and the byte limit honoured. The addon's batches come from a
// script here; test/integration/netlink-batches.test.ts reads the real kernel.
import { describe, expect, it } from 'vitest';
import type { ReceivedBatch } from '../../src/native/addon.js';
import { readBatches } from '../../src/netlink/native.js';

/** One receive() result holding `datagrams` (each given by its bytes and sender). */
function batch(datagrams: Array<[string, number]>, flags: Partial<Pick<ReceivedBatch, 'overrun' | 'truncated' | 'more'>> = {}): ReceivedBatch {
  return {
    bytes: Buffer.from(datagrams.map(([text]) => text).join('')),
    datagrams: Uint32Array.from(datagrams.flatMap(([text, sender]) => [Buffer.byteLength(text), sender])),
    overrun: flags.overrun ?? false,
    truncated: flags.truncated ?? false,
    more: flags.more ?? false,
  };
}

/** A socket whose receive() hands out `batches` in turn (then nothing), noting each limit asked for. */
function scripted(...batches: ReceivedBatch[]) {
  const limits: number[] = [];
  return {
    limits,
    receive(maxBytes?: number): ReceivedBatch {
      limits.push(maxBytes!);
      return batches.shift() ?? batch([]);
    },
  };
}

const texts = (datagrams: readonly Buffer[]) => datagrams.map((d) => d.toString());

describe('readAll over the addon batches', () => {
  it('strings the datagrams of every batch together in order, each with its sender', () => {
    const socket = scripted(batch([['aa', 0], ['bbb', 0]], { more: true }), batch([['c', 4242]], { more: true }), batch([['dddd', 0]]));
    const read = readBatches(socket, 1 << 20);
    expect(texts(read.datagrams)).toEqual(['aa', 'bbb', 'c', 'dddd']);
    expect(read.senderPortIds).toEqual([0, 0, 4242, 0]);
    expect(read).toMatchObject({ overrun: false, truncated: false, more: false });
    // Each call is offered what is left of the limit; the last one found the socket empty.
    expect(socket.limits).toEqual([1 << 20, (1 << 20) - 5, (1 << 20) - 6]);
  });

  it('reports an overrun the kernel signalled in a later batch, with the datagrams around it', () => {
    const read = readBatches(scripted(batch([['before', 0]], { more: true }), batch([['after', 0]], { overrun: true })), 1 << 20);
    expect(texts(read.datagrams)).toEqual(['before', 'after']);
    expect(read.overrun).toBe(true);
  });

  it('reports a datagram cut short in a later batch', () => {
    const read = readBatches(scripted(batch([['a', 0]], { more: true }), batch([['b', 0]], { truncated: true })), 1 << 20);
    expect(read).toMatchObject({ truncated: true, overrun: false });
  });

  it('stops at the byte limit and says more may be queued, or that the socket is empty', () => {
    const atLimit = scripted(batch([['12345', 0]], { more: true }), batch([['678', 0]], { more: true }), batch([['never', 0]]));
    const read = readBatches(atLimit, 8);
    expect(texts(read.datagrams)).toEqual(['12345', '678']);
    expect(read.more).toBe(true);
    expect(atLimit.limits).toEqual([8, 3]);

    const emptied = readBatches(scripted(batch([['12345', 0]], { more: true }), batch([])), 8);
    expect(emptied.more).toBe(false);
  });
});
