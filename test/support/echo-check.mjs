// For test/integration/echoes.test.ts, run with `ip netns exec` in a namespace holding link n0
// (up) with 198.18.5.2/28 and 2001:db8:5::2/64, and dist/ as its argument: a watcher and the
// reconciler write rules and routes; after each step, what the watcher's mirror holds of
// symroute's own (learnt from the echoes of its writes) is printed beside a fresh dump of the
// kernel (every message decoded in full), with how many echoes were taken as their request.
const D = process.argv[2];
const { RtnlClient } = await import(`${D}/netlink/client.js`);
const { Watcher, openNotificationSocket, dumpMirror } = await import(`${D}/kernel/watcher.js`);
const { applyChanges } = await import(`${D}/kernel/reconciler.js`);
const { echoes } = await import(`${D}/kernel/objects.js`);
const { defaultConfig } = await import(`${D}/config/config.js`);
const { mirrorScope } = await import(`${D}/domain/interest.js`);
const config = defaultConfig();
const client = new RtnlClient();
const taken = [];
const take = client.takeEcho.bind(client);
client.takeEcho = (raw) => {
  const sent = take(raw);
  if (sent) taken.push({ raw: { ...raw, payload: Uint8Array.from(raw.payload) }, sent });
  return sent;
};
const noop = () => undefined;
const watcher = new Watcher(client, openNotificationSocket(), { changed: noop, resyncStarted: noop, discarded: noop, skipped: noop, fetchingTables: noop, rpFilterChanged: noop }, () => mirrorScope(config));
await watcher.start();
const oif = [...watcher.mirror.links.values()].find((l) => l.name === 'n0').index;
const table = 1000 + oif;
const r4 = { family: 4, table, dst: '198.18.5.0', dstLength: 28, metric: 0, protocol: 83, scope: 253, type: 1, oif, prefsrc: '198.18.5.2' };
const r6 = { family: 6, table, dst: '2001:db8:5::', dstLength: 64, metric: 1024, protocol: 83, scope: 0, type: 1, oif, prefsrc: '2001:db8:5::2' };
const d4 = { family: 4, table, dst: '0.0.0.0', dstLength: 0, metric: 0, protocol: 83, scope: 0, type: 1, oif, gateway: '198.18.5.1' };
const d4b = { ...d4, gateway: '198.18.5.3' };
const d6 = { family: 6, table, dst: '::', dstLength: 0, metric: 1024, protocol: 83, scope: 0, type: 1, oif, gateway: '2001:db8:5::1' };
const rule4 = { family: 4, priority: 30000, table, action: 1, protocol: 83, src: '198.18.5.2', srcLength: 32, dstLength: 0, tos: 0 };
// IPv6 metric 0 is stored as 1024: the echo differs from the request, and must be decoded.
const filled = { ...r6, dst: '2001:db8:6::', metric: 0 };
const rule6 = { family: 6, priority: 30000, table, action: 1, protocol: 83, src: '2001:db8:5::2', srcLength: 128, dstLength: 0, tos: 0 };
const route = (op, route) => ({ kind: 'route', op, route });
const rule = (op, rule) => ({ kind: 'rule', op, rule });
const report = { steps: [], sent: 0 };
const owned = (mirror) => ({
  routes: [...mirror.routes.entries()].filter(([, r]) => r.protocol === 83).map(([k]) => k).sort(),
  rules: [...mirror.rules.entries()].filter(([, r]) => r.rule.protocol === 83).map(([k, r]) => `${k}x${r.count}`).sort(),
});
for (const [name, phases] of [
  ['add', [[route('add', r4), route('add', r6)], [route('add', d4), route('add', d6)], [rule('add', rule4), rule('add', rule6)]]],
  ['replace', [[route('replace', d4b)]]],
  ['filled in', [[route('add', filled)]]],
  ['delete', [[rule('delete', rule4), rule('delete', rule6)], [route('delete', d4b), route('delete', d6)], [route('delete', r4), route('delete', r6), route('delete', { ...filled, metric: 1024 })]]],
]) {
  const outcomes = await applyChanges(client, phases, (i) => `if${i}`);
  report.sent += outcomes.length;
  await new Promise((resolve) => setTimeout(resolve, 100));
  watcher.drain();
  const fresh = await dumpMirror(client, mirrorScope(config).tables);
  report.steps.push({ name, errors: outcomes.filter((o) => o.error).map((o) => o.error.message), mirror: owned(watcher.mirror), kernel: owned(fresh) });
}
report.taken = taken.length;
report.recognised = taken.filter((t) => echoes(t.raw, t.sent)).length;
console.log(JSON.stringify(report));
watcher.stop();
client.close();
