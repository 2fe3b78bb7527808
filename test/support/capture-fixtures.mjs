// Captures real rtnetlink datagrams from the running kernel as unit-test fixtures.
//
//   npx tsc -p . && sudo node test/support/capture-fixtures.mjs [outDir]
//
// As root it builds a throwaway network namespace (veth pairs, IPv4 and IPv6 addresses, routes
// in tables 1002 and 1003 with proto 83, a multipath default route, a `from` rule with proto
// 83), then re-runs itself inside the namespace (`ip netns exec`) to open symroute's own
// native netlink socket, dump links/addresses/routes/rules and provoke two errors, saving
// every datagram exactly as the kernel sent it. The namespace is deleted afterwards, also
// when something fails. outDir defaults to test/fixtures.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '../..');
const SELF = fileURLToPath(import.meta.url);

if (process.argv[2] === '--inside') {
  await captureInside(resolve(process.argv[3]));
} else {
  setUpAndCapture(resolve(process.argv[2] ?? join(REPO, 'test/fixtures')));
}

// ---------------------------------------------------------------- outside: the namespace

function setUpAndCapture(outDir) {
  if (process.getuid?.() !== 0) {
    console.error('capture-fixtures: must run as root (it creates a network namespace)');
    process.exit(1);
  }
  if (!existsSync(join(REPO, 'dist/netlink/native.js'))) {
    console.error('capture-fixtures: dist/ is missing; run `npx tsc -p .` first');
    process.exit(1);
  }
  const ns = `symroute-fx-${process.pid}`;
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const nsip = (...args) => ip('-n', ns, ...args);

  ip('netns', 'add', ns);
  try {
    // Fixed MAC addresses so the fixtures are the same however often they are taken again.
    nsip('link', 'set', 'lo', 'up');
    nsip('link', 'add', 'nic0', 'address', '02:00:00:00:00:01', 'type', 'veth', 'peer', 'name', 'peer0', 'address', '02:00:00:00:01:01');
    nsip('link', 'add', 'nic1', 'address', '02:00:00:00:00:02', 'type', 'veth', 'peer', 'name', 'peer1', 'address', '02:00:00:00:01:02');
    // nic2 stays administratively down: its IPv6 address stays tentative (DAD never starts).
    nsip('link', 'add', 'nic2', 'address', '02:00:00:00:00:03', 'type', 'veth', 'peer', 'name', 'peer2', 'address', '02:00:00:00:01:03');
    // No link-local addresses: their random bits and DAD state would make the fixtures vary.
    for (const link of ['nic0', 'nic1', 'nic2', 'peer0', 'peer1', 'peer2']) nsip('link', 'set', link, 'addrgenmode', 'none');
    for (const link of ['nic0', 'peer0', 'nic1', 'peer1']) nsip('link', 'set', link, 'up');

    nsip('address', 'add', '198.18.1.2/24', 'dev', 'nic0');
    nsip('address', 'add', '198.18.1.3/24', 'dev', 'nic0'); // secondary
    nsip('address', 'add', '2001:db8:1::2/64', 'dev', 'nic0', 'nodad');
    nsip('address', 'add', '2001:db8:1::3/64', 'dev', 'nic0', 'nodad', 'preferred_lft', '0'); // deprecated
    nsip('address', 'add', '198.18.2.2/24', 'dev', 'nic1');
    nsip('address', 'add', '2001:db8:2::2/64', 'dev', 'nic1', 'nodad');
    nsip('address', 'add', '198.18.255.1', 'peer', '198.18.255.2/32', 'dev', 'nic1'); // point-to-point
    nsip('address', 'add', '198.18.3.2/24', 'dev', 'nic2');
    nsip('address', 'add', '2001:db8:3::2/64', 'dev', 'nic2'); // tentative: nic2 is down

    // symroute-style routes in table 1002 (>= 256: only RTA_TABLE can hold it).
    nsip('route', 'add', '198.18.1.0/24', 'dev', 'nic0', 'table', '1002', 'proto', '83', 'scope', 'link', 'src', '198.18.1.2');
    nsip('route', 'add', 'default', 'via', '198.18.1.1', 'dev', 'nic0', 'table', '1002', 'proto', '83');
    nsip('-6', 'route', 'add', '2001:db8:1::/64', 'dev', 'nic0', 'table', '1002', 'proto', '83', 'metric', '1024', 'src', '2001:db8:1::2');
    nsip('-6', 'route', 'add', 'default', 'via', '2001:db8:1::1', 'dev', 'nic0', 'table', '1002', 'proto', '83', 'metric', '1024');
    // Multipath defaults in table 1003, and an ordinary multipath default in main.
    nsip('route', 'add', 'default', 'table', '1003', 'proto', '83',
      'nexthop', 'via', '198.18.1.1', 'dev', 'nic0', 'nexthop', 'via', '198.18.2.1', 'dev', 'nic1');
    nsip('-6', 'route', 'add', 'default', 'table', '1003', 'proto', '83', 'metric', '1024',
      'nexthop', 'via', '2001:db8:1::1', 'dev', 'nic0', 'nexthop', 'via', '2001:db8:2::1', 'dev', 'nic1');
    nsip('route', 'add', 'default', 'proto', 'static', 'metric', '100',
      'nexthop', 'via', '198.18.1.1', 'dev', 'nic0', 'nexthop', 'via', '198.18.2.1', 'dev', 'nic1');
    nsip('route', 'add', 'default', 'via', '198.18.2.1', 'dev', 'nic1', 'proto', 'dhcp', 'metric', '200');

    nsip('rule', 'add', 'from', '198.18.1.2', 'lookup', '1002', 'pref', '30000', 'proto', '83');
    nsip('-6', 'rule', 'add', 'from', '2001:db8:1::2', 'lookup', '1002', 'pref', '30000', 'proto', '83');
    nsip('rule', 'add', 'from', '198.18.2.0/24', 'lookup', '200', 'pref', '30001', 'proto', 'static');

    mkdirSync(outDir, { recursive: true });
    for (const name of readdirSync(outDir)) if (name.endsWith('.bin')) rmSync(join(outDir, name));
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, SELF, '--inside', outDir], { stdio: 'inherit' });
    writeFileSync(join(outDir, 'README.md'), readme(ns));
  } finally {
    ip('netns', 'del', ns);
  }
}

function readme(ns) {
  const kernel = execFileSync('uname', ['-r']).toString().trim();
  const iproute = execFileSync('ip', ['-V']).toString().trim();
  return `# rtnetlink fixtures

Raw datagrams exactly as the kernel sent them to symroute's native netlink socket
(NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK and NETLINK_CAP_ACK set). Host byte order:
they were taken on a little-endian machine, and the tests that read them skip them on big-endian ones.

Made by \`test/support/capture-fixtures.mjs\` (run as root after \`npx tsc -p .\`:
\`node test/support/capture-fixtures.mjs\`) in a throwaway network namespace (${ns}),
on Linux ${kernel}, ${iproute}, ${new Date().toISOString().slice(0, 10)}.

## The namespace

- \`lo\` up; veth pairs \`nic0\`/\`peer0\` (02:00:00:00:00:01), \`nic1\`/\`peer1\`
  (02:00:00:00:00:02) up, \`nic2\`/\`peer2\` (02:00:00:00:00:03) left down;
  \`addrgenmode none\` (no IPv6 link-local addresses).
- nic0: 198.18.1.2/24, 198.18.1.3/24 (secondary), 2001:db8:1::2/64 nodad,
  2001:db8:1::3/64 nodad preferred_lft 0 (deprecated).
- nic1: 198.18.2.2/24, 2001:db8:2::2/64 nodad, 198.18.255.1 peer 198.18.255.2/32.
- nic2 (down): 198.18.3.2/24, 2001:db8:3::2/64 (tentative).
- table 1002, proto 83: 198.18.1.0/24 dev nic0 scope link src 198.18.1.2;
  default via 198.18.1.1 dev nic0; 2001:db8:1::/64 dev nic0 metric 1024 src 2001:db8:1::2;
  default via 2001:db8:1::1 dev nic0 metric 1024.
- table 1003, proto 83: default nexthop via 198.18.1.1 dev nic0 nexthop via 198.18.2.1 dev nic1;
  the same for IPv6 via 2001:db8:1::1 / 2001:db8:2::1, metric 1024.
- main: default proto static metric 100 nexthop via 198.18.1.1 dev nic0 nexthop via
  198.18.2.1 dev nic1; default via 198.18.2.1 dev nic1 proto dhcp metric 200.
- rules: from 198.18.1.2 lookup 1002 pref 30000 proto 83; from 2001:db8:1::2 lookup 1002
  pref 30000 proto 83; from 198.18.2.0/24 lookup 200 pref 30001 proto static.

## The files

- \`<kind>-dump-<n>.bin\` (kind = link, address, route, rule): datagram n of an
  AF_UNSPEC dump (RTM_GET<KIND>, NLM_F_REQUEST|NLM_F_DUMP, seq 1..4); the last one holds
  NLMSG_DONE.
- \`route-dump-enoent-0.bin\`: a strict AF_INET route dump filtered on RTA_TABLE 4242, a
  table that does not exist: NLMSG_DONE carrying -ENOENT and the extended ack
  "ipv4: FIB table does not exist".
- \`error-invalid-gateway-0.bin\`: the reply to RTM_NEWROUTE (NLM_F_ACK|NLM_F_CREATE|NLM_F_EXCL)
  of "default via 203.0.113.1 dev nic0 table 1002": NLMSG_ERROR -ENETUNREACH, capped
  (NLM_F_CAPPED), with NLM_F_ACK_TLVS and the message "Nexthop has invalid gateway".
- \`ack-0.bin\`: the reply to a successful RTM_NEWRULE with NLM_F_ACK (error 0).

\`builders.ts\` is not generated: it holds the message factories the unit tests share.
Taking the fixtures again replaces every \`.bin\` file and this README, nothing else.
`;
}

// ---------------------------------------------------------------- inside: the captures

async function captureInside(outDir) {
  const { openNetlinkSocket } = await import(join(REPO, 'dist/netlink/native.js'));
  const { encodeRequest } = await import(join(REPO, 'dist/netlink/messages.js'));
  const { splitDatagram } = await import(join(REPO, 'dist/netlink/codec.js'));
  const { dumpRequests } = await import(join(REPO, 'dist/kernel/objects.js'));
  const c = { ...(await import(join(REPO, 'dist/netlink/constants.js'))), ...(await import(join(REPO, 'dist/domain/constants.js'))) };

  const socket = openNetlinkSocket({});
  let seq = 0;

  /** Sends one request and collects datagrams until the reply for its seq is complete. */
  async function exchange(type, flags, body, name) {
    const mySeq = ++seq;
    socket.send([encodeRequest({ type, flags, seq: mySeq, portId: socket.portId }, body)]);
    const datagrams = [];
    const deadline = Date.now() + 5000;
    for (;;) {
      const read = socket.readAll();
      if (read.overrun || read.truncated) throw new Error(`${name}: overrun or truncated read`);
      let finished = false;
      for (const datagram of read.datagrams) {
        const messages = splitDatagram(datagram);
        if (!messages.some((m) => m.seq === mySeq)) continue;
        datagrams.push(datagram);
        if (messages.some((m) => m.type === c.NLMSG_DONE || m.type === c.NLMSG_ERROR)) finished = true;
      }
      if (finished) break;
      if (Date.now() > deadline) throw new Error(`${name}: no complete reply within 5 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    datagrams.forEach((datagram, i) => {
      writeFileSync(join(outDir, `${name}-${i}.bin`), datagram);
      console.log(`${name}-${i}.bin: ${datagram.length} bytes, ${splitDatagram(datagram).length} messages`);
    });
  }

  const DUMP = c.NLM_F_REQUEST | c.NLM_F_DUMP;
  await exchange(c.RTM_GETLINK, DUMP, dumpRequests.link, 'link-dump');
  await exchange(c.RTM_GETADDR, DUMP, dumpRequests.address, 'address-dump');
  await exchange(c.RTM_GETROUTE, DUMP, dumpRequests.route, 'route-dump');
  await exchange(c.RTM_GETRULE, DUMP, dumpRequests.rule, 'rule-dump');

  const missingTable = {
    kind: 'route',
    header: { ...dumpRequests.route.header, family: c.AF_INET },
    attributes: { table: 4242 },
  };
  await exchange(c.RTM_GETROUTE, DUMP, missingTable, 'route-dump-enoent');

  const nic0 = Number(execFileSync('cat', ['/sys/class/net/nic0/ifindex']).toString());
  const badGateway = {
    kind: 'route',
    header: {
      family: c.AF_INET, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 83,
      scope: c.RT_SCOPE_UNIVERSE, type: c.RTN_UNICAST, flags: 0,
    },
    attributes: { oif: nic0, gateway: '203.0.113.1', table: 1002 },
  };
  await exchange(c.RTM_NEWROUTE, c.NLM_F_REQUEST | c.NLM_F_ACK | c.NLM_F_CREATE | c.NLM_F_EXCL, badGateway, 'error-invalid-gateway');

  const rule = {
    kind: 'rule',
    header: { family: c.AF_INET, dstLen: 0, srcLen: 32, tos: 0, table: 0, action: c.FR_ACT_TO_TBL, flags: 0 },
    attributes: { src: '198.18.1.3', priority: 30000, table: 1002, protocol: 83 },
  };
  await exchange(c.RTM_NEWRULE, c.NLM_F_REQUEST | c.NLM_F_ACK | c.NLM_F_CREATE | c.NLM_F_EXCL, rule, 'ack');
  socket.close();
}
