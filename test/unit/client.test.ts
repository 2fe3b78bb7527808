// The request layer against a scripted kernel: sequence numbers and port ids are checked like
// libmnl does, ACKs settle the right requests, dumps flagged NLM_F_DUMP_INTR are taken again,
// and nothing is left hanging when replies are lost or unreadable.
import { describe, expect, it } from 'vitest';
import { RtnlClient, type Request } from '../../src/netlink/client.js';
import { concat, encodeAttribute, encodeMessage, splitDatagram, type RawMessage } from '../../src/netlink/codec.js';
import {
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_DUMP_INTR,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLM_F_ACK,
  NLM_F_REQUEST,
  NLMSGERR_ATTR_MSG,
  RTM_GETRULE,
  RTM_NEWRULE,
} from '../../src/netlink/constants.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { encodeRequest, type RtnlBody } from '../../src/netlink/messages.js';
import type { NativeNetlinkSocket, ReadResult } from '../../src/netlink/native.js';
import { dumpRequests, ruleToMessage } from '../../src/kernel/objects.js';
import { rule } from '../support/builders.js';

const PORT = 4242;
const EEXIST = 17;
const ENOENT = 2;

/** Stands in for the kernel: records what is sent, and delivers what the test scripts. */
class ScriptedSocket implements NativeNetlinkSocket {
  readonly portId = PORT;
  readonly sent: RawMessage[] = [];
  sendCalls = 0;
  pending: ReadResult = { datagrams: [], senderPortIds: [], overrun: false, truncated: false };
  private onReadable: (() => void) | null = null;

  send(messages: readonly Uint8Array[]): number {
    this.sendCalls++;
    for (const message of messages) this.sent.push(...splitDatagram(message));
    return messages.reduce((n, m) => n + m.length, 0);
  }
  readAll(): ReadResult {
    const result = this.pending;
    this.pending = { datagrams: [], senderPortIds: [], overrun: false, truncated: false };
    return result;
  }
  startReading(onReadable: () => void): void {
    this.onReadable = onReadable;
  }
  stopReading(): void {}
  close(): void {}

  /** Queues datagrams (from the kernel unless `sender` says otherwise) and signals readability. */
  deliver(datagrams: Uint8Array[], options: { sender?: number; overrun?: boolean } = {}): void {
    this.pending = {
      datagrams: datagrams.map((d) => Buffer.from(d)),
      senderPortIds: datagrams.map(() => options.sender ?? 0),
      overrun: options.overrun ?? false,
      truncated: false,
    };
    this.onReadable!();
  }
}

/** An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK. */
function ack(seq: number, errno = 0, extack?: string, portId = PORT): Buffer {
  const error = Buffer.alloc(4 + 16);
  error.writeInt32LE(-errno, 0);
  const tlvs = extack ? encodeAttribute(NLMSGERR_ATTR_MSG, Buffer.from(`${extack}\0`)) : new Uint8Array(0);
  return encodeMessage(
    { type: NLMSG_ERROR, flags: NLM_F_CAPPED | (extack ? NLM_F_ACK_TLVS : 0), seq, portId },
    concat([error, tlvs]),
  );
}

function done(seq: number, errno = 0, flags = NLM_F_MULTI): Buffer {
  const status = Buffer.alloc(4);
  status.writeInt32LE(-errno, 0);
  return encodeMessage({ type: NLMSG_DONE, flags, seq, portId: PORT }, status);
}

function part(seq: number, body: RtnlBody, flags = NLM_F_MULTI): Buffer {
  return encodeRequest({ type: RTM_NEWRULE, flags, seq, portId: PORT }, body);
}

const addRule = (src: string): Request => ({
  op: 'add_rule',
  type: RTM_NEWRULE,
  flags: NLM_F_CREATE | NLM_F_EXCL,
  body: ruleToMessage(rule({ from: src, table: 1002 })),
  action: `adding rule from ${src} lookup 1002`,
});

const ruleA = ruleToMessage(rule({ from: '198.18.1.2', table: 1002 }));
const ruleB = ruleToMessage(rule({ from: '198.18.1.3', table: 1003 }));

describe('requests', () => {
  it('go out in one sendmsg and are settled by their own ACKs, in any order', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const results = client.execute([addRule('198.18.1.2'), addRule('198.18.1.3'), addRule('198.18.1.4')]);
    expect(socket.sendCalls).toBe(1);
    const seqs = socket.sent.map((m) => m.seq);
    expect(new Set(seqs).size).toBe(3);
    expect(socket.sent.every((m) => m.portId === PORT)).toBe(true);
    socket.deliver([ack(seqs[2]!), ack(seqs[0]!), ack(seqs[1]!, EEXIST, 'File exists in the rule table')]);
    const [first, second, third] = await results;
    expect(first).toEqual({ ok: true });
    expect(third).toEqual({ ok: true });
    expect(second!.ok).toBe(false);
    const error = (second as { error: NetlinkError }).error;
    expect(error).toBeInstanceOf(NetlinkError);
    expect(error.code).toBe('EEXIST');
    expect(error.message).toBe('adding rule from 198.18.1.3 lookup 1002: File exists in the rule table (EEXIST)');
  });

  it('go out batch after batch in one stretch, each batch\'s ACKs read as soon as it is sent (as the kernel queues them inside sendmsg)', async () => {
    const socket = new ScriptedSocket();
    const between: number[] = [];
    const client = new RtnlClient({}, socket);
    client.afterBatch = () => between.push(socket.sendCalls);
    const answering = socket.send.bind(socket);
    let worded = 0;
    socket.send = (messages) => {
      const sent = answering(messages);
      // Like the kernel: every request handled, and its ACK queued, before sendmsg returns.
      const acks = socket.sent.slice(-messages.length).map((m) => ack(m.seq, m.seq % 100 === 0 ? EEXIST : 0));
      socket.pending = { datagrams: acks, senderPortIds: acks.map(() => 0), overrun: false, truncated: false };
      return sent;
    };
    const requests = Array.from({ length: 600 }, (_, i) => {
      const request = addRule(`198.18.${i >> 8}.${i & 255}`);
      return { ...request, get action() { worded++; return request.action; } };
    });
    const results = client.execute(requests);
    // All three batches went out before execute() returned: none waited for a turn of the event loop.
    expect(socket.sendCalls).toBe(3);
    expect(between).toEqual([1, 2]);
    const outcomes = await results;
    expect(outcomes).toHaveLength(600);
    const refused = socket.sent.filter((m) => m.seq % 100 === 0).length;
    expect(outcomes.filter((o) => !o.ok)).toHaveLength(refused);
    expect(refused).toBeGreaterThan(0);
    // Only a refused request is worded.
    expect(worded).toBe(refused);
  });

  it('without an extended ack, say what failed in the system\'s words', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const result = client.execute([addRule('198.18.1.2')]);
    socket.deliver([ack(socket.sent[0]!.seq, EEXIST)]);
    const [outcome] = await result;
    expect((outcome as { error: NetlinkError }).error.message).toBe('adding rule from 198.18.1.2 lookup 1002: file already exists (EEXIST)');
  });

  it('ignore replies for another port, an unknown sequence number, or from a process', async () => {
    const socket = new ScriptedSocket();
    const discarded: string[] = [];
    const completed: string[] = [];
    const client = new RtnlClient({ discarded: (r) => discarded.push(r), completed: (op) => completed.push(op) }, socket);
    const result = client.execute([addRule('198.18.1.2')]);
    const seq = socket.sent[0]!.seq;
    socket.deliver([ack(seq, 0, undefined, PORT + 1), ack(seq + 100)]);
    socket.deliver([ack(seq)], { sender: 999 });
    expect(discarded).toHaveLength(3);
    expect(completed).toEqual([]);
    socket.deliver([ack(seq)]);
    expect(await result).toEqual([{ ok: true }]);
    expect(completed).toEqual(['add_rule']);
  });

  it('are all failed, not left hanging, when the socket overran and replies were lost', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const result = client.execute([addRule('198.18.1.2'), addRule('198.18.1.3')]);
    socket.deliver([], { overrun: true });
    const outcomes = await result;
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      expect((outcome as { error: NetlinkError }).error.message).toMatch(/overrun \(ENOBUFS\)/);
    }
  });

  it('are all failed when a reply cannot be decoded', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const result = client.execute([addRule('198.18.1.2')]);
    socket.deliver([Uint8Array.from([200, 0, 0, 0, 2, 0])]);
    const [outcome] = await result;
    expect(outcome!.ok).toBe(false);
  });
});

describe('dumps', () => {
  it('collect every part until NLMSG_DONE', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const dump = client.dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules');
    await flush(); // dumps are queued one behind the other
    const seq = socket.sent[0]!.seq;
    socket.deliver([concat([part(seq, ruleA), part(seq, ruleB)])]);
    socket.deliver([done(seq)]);
    expect(await dump).toEqual([ruleA, ruleB]);
  });

  it('that end in an error reject with the kernel\'s reason', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const dump = client.dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules');
    await flush();
    socket.deliver([done(socket.sent[0]!.seq, ENOENT)]);
    await expect(dump).rejects.toThrow(/dumping rules: .* \(ENOENT\)/);
  });

  it('flagged NLM_F_DUMP_INTR are thrown away and taken again', async () => {
    const socket = new ScriptedSocket();
    const interrupted: string[] = [];
    const client = new RtnlClient({ dumpInterrupted: (a) => interrupted.push(a) }, socket);
    const dump = client.dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules');
    await flush();
    const first = socket.sent[0]!.seq;
    socket.deliver([part(first, ruleA, NLM_F_MULTI | NLM_F_DUMP_INTR), done(first, 0, NLM_F_MULTI | NLM_F_DUMP_INTR)]);
    await flush();
    expect(socket.sent).toHaveLength(2);
    const second = socket.sent[1]!.seq;
    expect(second).not.toBe(first);
    socket.deliver([part(second, ruleB), done(second)]);
    expect(await dump).toEqual([ruleB]);
    expect(interrupted).toEqual(['dumping rules']);
  });

  it('stream each part to the caller as it is read, before the dump is done, and leave an interrupted one to the caller', async () => {
    const socket = new ScriptedSocket();
    const interrupted: string[] = [];
    const client = new RtnlClient({ dumpInterrupted: (a) => interrupted.push(a) }, socket);
    const parts: RtnlBody[] = [];
    const dump = client.dumpEach(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules', (body) => parts.push(body));
    await flush();
    const seq = socket.sent[0]!.seq;
    socket.deliver([part(seq, ruleA)]);
    expect(parts).toEqual([ruleA]);
    socket.deliver([part(seq, ruleB, NLM_F_MULTI | NLM_F_DUMP_INTR), done(seq, 0, NLM_F_MULTI | NLM_F_DUMP_INTR)]);
    expect(await dump).toEqual({ interrupted: true });
    expect(parts).toEqual([ruleA, ruleB]);
    expect(socket.sent).toHaveLength(1); // not taken again: the caller starts over
    expect(interrupted).toEqual(['dumping rules']);
  });

  it('run one at a time: the kernel answers EBUSY to a second concurrent dump', async () => {
    const socket = new ScriptedSocket();
    const client = new RtnlClient({}, socket);
    const first = client.dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules');
    const second = client.dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'dumping rules again');
    await flush();
    expect(socket.sent).toHaveLength(1);
    socket.deliver([done(socket.sent[0]!.seq)]);
    await first;
    await flush();
    expect(socket.sent).toHaveLength(2);
    socket.deliver([done(socket.sent[1]!.seq)]);
    expect(await second).toEqual([]);
  });
});


describe('ping (liveness)', () => {
  it('sends an NLMSG_NOOP asking for an ACK and resolves on that ACK, counting nothing', async () => {
    const socket = new ScriptedSocket();
    const completed: string[] = [];
    const client = new RtnlClient({ completed: (op) => completed.push(op) }, socket);
    const ping = client.ping(60_000);
    expect(socket.sent).toHaveLength(1);
    expect(socket.sent[0]).toMatchObject({ type: NLMSG_NOOP, flags: NLM_F_REQUEST | NLM_F_ACK, portId: PORT });
    expect(socket.sent[0]!.payload).toHaveLength(0);
    socket.deliver([ack(socket.sent[0]!.seq)]);
    await expect(ping).resolves.toBeUndefined();
    expect(completed).toEqual([]);
  });

  it('rejects when no ACK comes in time, and a late ACK is then discarded', async () => {
    const socket = new ScriptedSocket();
    const discarded: string[] = [];
    const client = new RtnlClient({ discarded: (reason) => discarded.push(reason) }, socket);
    await expect(client.ping(1)).rejects.toThrow('no answer to a ping within 1 ms');
    socket.deliver([ack(socket.sent[0]!.seq)]);
    expect(discarded).toHaveLength(1);
  });
});

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
