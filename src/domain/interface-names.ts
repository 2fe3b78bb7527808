// Which interfaces symroute manages, and which are plumbing, by name.
import type { Config } from '../config/config.js';
import { matchesGlob } from '../config/glob.js';

/** Excluded plumbing: a container, VM or tunnel device whose routes in main stay reachable from every source. */
export function isPlumbingName(config: { readonly interfaces: Pick<Config['interfaces'], 'exclude'> }, ifname: string): boolean {
  return ifname !== 'lo' && config.interfaces.exclude.some((glob) => matchesGlob(glob, ifname));
}

export function isManagedName(config: Config, ifname: string): boolean {
  const { include, exclude } = config.interfaces;
  // Loopback traffic never leaves the host, so there is no return path to keep symmetric.
  const matches = (glob: string) => matchesGlob(glob, ifname);
  return ifname !== 'lo' && include.some(matches) && !exclude.some(matches);
}
