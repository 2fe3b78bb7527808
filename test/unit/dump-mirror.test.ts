// The start-up dumps against a scripted kernel: each dump streams into the mirror as it is
// read (what does not matter is never decoded), and one the kernel flags NLM_F_DUMP_INTR
// throws the whole copy away and starts over from the links.
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { mirrorScope } from '../../src/domain/interest.js';
import { dumpMirror } from '../../src/kernel/watcher.js';
import { routeToMessage } from '../../src/kernel/objects.js';
import { RtnlClient } from '../../src/netlink/client.js';
import { encodeMessage, splitDatagram } from '../../src/netlink/codec.js';
import {
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NLMSG_DONE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_GETRULE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
} from '../../src/netlink/constants.js';
import { encodeRequest, type RtnlBody } from '../../src/netlink/messages.js';
import type { NativeNetlinkSocket, ReadResult } from '../../src/netlink/native.js';
import { addressMessage, linkMessage, PROTO_BOOT, route } from '../support/builders.js';

const PORT = 4343;
const config = defaultConfig();

/** What the kernel answers one dump with: its objects, raw (so one can be malformed), and whether it was interrupted. */
interface Answer {
  readonly parts: readonly Buffer[];
  readonly interrupted?: boolean;
}

/**
 * Answers each dump request from `script(type, round)`, `round` counting the link dumps (a
 * new round of dumps starts with one), a couple of parts per datagram. Reads come a few
 * datagrams at a time, as the kernel makes a dump's next part only once one is read.
 */
class DumpingKernel implements NativeNetlinkSocket {
  readonly portId = PORT;
  readonly requests: number[] = [];
  round = 0;
  private queue: Buffer[] = [];
  private onReadable: (() => void) | null = null;

  constructor(private readonly script: (type: number, round: number) => Answer) {}

  send(messages: readonly Uint8Array[]): number {
    for (const message of messages) {
      for (const request of splitDatagram(message)) {
        this.requests.push(request.type);
        if (request.type === RTM_GETLINK) this.round++;
        const { parts, interrupted } = this.script(request.type, this.round);
        const flags = NLM_F_MULTI | (interrupted ? NLM_F_DUMP_INTR : 0);
        const framed = parts.map((part) => withHeader(part, flags, request.seq));
        for (let i = 0; i < framed.length; i += 2) this.queue.push(Buffer.concat(framed.slice(i, i + 2)));
        this.queue.push(encodeMessage({ type: NLMSG_DONE, flags, seq: request.seq, portId: PORT }, Buffer.alloc(4)));
      }
    }
    setImmediate(() => this.onReadable?.());
    return messages.length;
  }

  readAll(maxBytes = Infinity): ReadResult {
    const datagrams: Buffer[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && bytes < maxBytes) {
      const datagram = this.queue.shift()!;
      bytes += datagram.length;
      datagrams.push(datagram);
    }
    return { datagrams, senderPortIds: datagrams.map(() => 0), overrun: false, truncated: false, more: bytes >= maxBytes };
  }

  startReading(onReadable: () => void): void {
    this.onReadable = onReadable;
  }
  stopReading(): void {}
  close(): void {}
}

/** A message as encodeRequest frames it, its header's flags, sequence number and port set as a dump part's. */
function withHeader(message: Buffer, flags: number, seq: number): Buffer {
  const framed = Buffer.from(message);
  framed.writeUInt16LE(flags, 6);
  framed.writeUInt32LE(seq, 8);
  framed.writeUInt32LE(PORT, 12);
  return framed;
}

const part = (type: number, body: RtnlBody): Buffer => encodeRequest({ type, flags: 0, seq: 0, portId: 0 }, body);
const linkPart = (index: number, name: string) => part(RTM_NEWLINK, linkMessage(index, name));
const routePart = (spec: Parameters<typeof route>[0]) => part(RTM_NEWROUTE, routeToMessage(route(spec)));

/**
 * A route of table 200 (exact in its header, so the peek needs no attribute) whose first
 * attribute claims more bytes than the message has: decoding it would throw.
 */
function malformedForeignRoute(): Buffer {
  const message = routePart({ dst: '198.51.100.0/24', oif: 2, table: 200, protocol: PROTO_BOOT });
  message.writeUInt16LE(0xffff, 16 + 12); // after nlmsghdr and rtmsg
  return message;
}

describe('dumpMirror', () => {
  it('streams each dump into the mirror and never decodes a route of a table that does not matter', async () => {
    const foreign = malformedForeignRoute();
    const kernel = new DumpingKernel((type) => {
      if (type === RTM_GETLINK) return { parts: [linkPart(1, 'lo'), linkPart(2, 'eth0')] };
      if (type === RTM_GETADDR) return { parts: [part(RTM_NEWADDR, addressMessage({ ifindex: 2, cidr: '198.18.0.2/24' }))] };
      if (type === RTM_GETROUTE) {
        return {
          parts: [
            routePart({ dst: '198.18.0.0/24', oif: 2, table: 254, protocol: PROTO_BOOT, scope: 253 }),
            foreign,
            routePart({ dst: '0.0.0.0/0', gateway: '198.18.0.1', oif: 2, table: 254, protocol: PROTO_BOOT }),
          ],
        };
      }
      return { parts: [] };
    });
    const client = new RtnlClient({}, kernel);
    const mirror = await dumpMirror(client, mirrorScope(config).tables);
    expect([...mirror.links.keys()]).toEqual([1, 2]);
    expect(mirror.mainDeviceRouteCovers(2, 4, '198.18.0.77')).toBe(true);
    expect([...mirror.mainDefaultsVia(2).values()].map((r) => r.gateway)).toEqual(['198.18.0.1']);
    expect([...mirror.tables()]).not.toContain(200);
  });

  it('throws the whole copy away when a dump is flagged NLM_F_DUMP_INTR, and starts over from the links', async () => {
    const interrupted: string[] = [];
    const kernel = new DumpingKernel((type, round) => {
      // Round 1: eth1 is there and its route dump is interrupted (eth1 goes meanwhile).
      if (type === RTM_GETLINK) return { parts: round === 1 ? [linkPart(2, 'eth0'), linkPart(3, 'eth1')] : [linkPart(2, 'eth0')] };
      if (type === RTM_GETROUTE && round === 1) {
        return { parts: [routePart({ dst: '198.18.3.0/24', oif: 3, table: 254, protocol: PROTO_BOOT, scope: 253 })], interrupted: true };
      }
      if (type === RTM_GETROUTE) return { parts: [routePart({ dst: '198.18.2.0/24', oif: 2, table: 254, protocol: PROTO_BOOT, scope: 253 })] };
      if (type === RTM_GETRULE) return { parts: [] };
      return { parts: [] };
    });
    const client = new RtnlClient({ dumpInterrupted: (action) => interrupted.push(action) }, kernel);
    const mirror = await dumpMirror(client, mirrorScope(config).tables);
    expect(kernel.round).toBe(2);
    expect(interrupted).toEqual([expect.stringMatching(/^dumping routes/)]);
    expect([...mirror.links.keys()]).toEqual([2]);
    expect(mirror.mainDeviceRouteCovers(3, 4, '198.18.3.9')).toBe(false);
    expect(mirror.mainDeviceRouteCovers(2, 4, '198.18.2.9')).toBe(true);
    // The first round stopped at its interrupted dump: no rules were asked for in it.
    const firstRound = kernel.requests.slice(0, kernel.requests.indexOf(RTM_GETLINK, 1));
    expect(firstRound).not.toContain(RTM_GETRULE);
  });

  it('gives up after ten interrupted rounds in a row', async () => {
    const kernel = new DumpingKernel((type) => ({ parts: type === RTM_GETLINK ? [linkPart(2, 'eth0')] : [], interrupted: type === RTM_GETADDR }));
    const client = new RtnlClient({}, kernel);
    await expect(dumpMirror(client, mirrorScope(config).tables, undefined, undefined, async () => undefined)).rejects.toThrow(/interrupted by concurrent changes 10 times in a row/);
    expect(kernel.round).toBe(10);
  });

});

