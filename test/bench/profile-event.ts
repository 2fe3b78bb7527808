// `vite-node test/bench/profile-event.ts [nics] [events] [--unsampled]` (as root, after
// `npm run build`): prints where one trivial event's CPU goes on a host of `nics` NICs
// (event-profile.ts); --unsampled runs the daemon without --cpu-prof (its own stage figures only).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsLab } from '../../src/lab/netns.js';
import { printEventProfile, profileEvents } from './event-profile.js';
import { buildWorld } from './world.js';

const nics = Number(process.argv[2] ?? 1);
const events = Number(process.argv[3] ?? 200);
const sampled = !process.argv.includes('--unsampled');
const dir = mkdtempSync(join(tmpdir(), 'symroute-event-profile-'));
const lab = new NetnsLab('srp');
try {
  const world = await buildWorld(lab, 'e', nics, dir);
  const config = join(dir, 'quiet.yaml');
  writeFileSync(config, 'metrics:\n  listen: false\n');
  printEventProfile(nics, await profileEvents(world, dir, events, config, sampled));
} finally {
  await lab.removeNamespaces();
  rmSync(dir, { recursive: true, force: true });
}
