// ARP and reverse-path sysctls of NICs that share an IPv4 subnet. Per-NIC rules make replies
// leave through the right NIC, but only if requests arrive on it: with arp_ignore=0 the host
// answers ARP for every address on every NIC, so a client's traffic for one NIC's address may
// come in on another, where strict rp_filter drops it (or the reply rule sends it back out a
// NIC the client never talked to). Needed: arp_ignore=1 (answer only for the NIC's own
// addresses) and arp_announce=2 (ask with the NIC's own address as the source).
//
// The values live in /proc/sys/net/ipv4/conf/<if>/ of the daemon's own network namespace and
// are read and written directly (the daemon runs no programs). The kernel uses the larger
// of `all` and the interface's own value for all three settings.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CONF_DIR = '/proc/sys/net/ipv4/conf';

const KEYS = ['arp_ignore', 'arp_announce', 'rp_filter'] as const;
type Key = (typeof KEYS)[number];
export type ConfValues = Readonly<Record<Key, number>>;

/** What each setting must be for symmetric replies, and the value symroute writes. */
const WANTED = {
  // 2 (reply only if the sender is in the NIC's subnet too) is stricter still and also works.
  arp_ignore: { good: (value: number) => value === 1 || value === 2, write: 1 },
  arp_announce: { good: (value: number) => value === 2, write: 2 },
} as const;
type ArpKey = keyof typeof WANTED;

export interface SysctlFinding {
  readonly ifname: string;
  readonly key: ArpKey;
  /** The value the kernel uses: the larger of `all` and the interface's own. */
  readonly effective: number;
  /** Whether writing the interface's own value can fix it (not when `all` is larger). */
  readonly fixable: boolean;
  readonly message: string;
}

/** What is wrong with one interface's settings (pure). */
export function findings(ifname: string, all: ConfValues, own: ConfValues): SysctlFinding[] {
  const strict = Math.max(all.rp_filter, own.rp_filter) === 1;
  const consequence = strict
    ? 'requests for its addresses may arrive on another NIC, where strict rp_filter drops them'
    : 'requests for its addresses may arrive on another NIC, and replies then leave by a NIC the client did not use';
  return (Object.keys(WANTED) as ArpKey[]).flatMap((key) => {
    const effective = Math.max(all[key], own[key]);
    if (WANTED[key].good(effective)) return [];
    const fixable = WANTED[key].good(Math.max(all[key], WANTED[key].write));
    const where = fixable ? `net.ipv4.conf.${ifname}.${key}` : `net.ipv4.conf.all.${key} (now ${all[key]})`;
    return [{
      ifname,
      key,
      effective,
      fixable,
      message:
        `${ifname}: ${key} is ${effective} on a NIC that shares its subnet with another, so ${consequence}; ` +
        `set ${where}=${WANTED[key].write}${fixable ? ' (or sysctl: manage)' : ''}`,
    }];
  });
}

/** Reads and writes the settings of the daemon's own network namespace. */
export class ConfFiles {
  constructor(private readonly dir = CONF_DIR) {}

  read(ifname: string): ConfValues {
    const value = (key: Key) => Number(readFileSync(join(this.dir, ifname, key), 'utf8').trim());
    return { arp_ignore: value('arp_ignore'), arp_announce: value('arp_announce'), rp_filter: value('rp_filter') };
  }

  write(ifname: string, key: ArpKey, value: number): void {
    writeFileSync(join(this.dir, ifname, key), `${value}\n`);
  }
}

export interface SysctlCheck {
  readonly findings: readonly SysctlFinding[];
  readonly written: readonly string[]; // `net.ipv4.conf.b0.arp_ignore=1 (was 0)`
  readonly errors: readonly string[];
}

/**
 * Reads the settings of `ifnames` (and `all`) and, when `manage` is set, writes the
 * interface's own value where that fixes it; findings are what is still wrong afterwards.
 */
export function checkSysctls(files: ConfFiles, ifnames: readonly string[], manage: boolean): SysctlCheck {
  const result = { findings: [] as SysctlFinding[], written: [] as string[], errors: [] as string[] };
  if (ifnames.length === 0) return result;
  let all: ConfValues;
  try {
    all = files.read('all');
  } catch (error) {
    result.errors.push(`cannot read the ARP settings of all interfaces: ${(error as Error).message}`);
    return result;
  }
  for (const ifname of ifnames) {
    let own: ConfValues;
    try {
      own = files.read(ifname);
    } catch (error) {
      // The interface may have gone since it was planned; its removal wakes the next check.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        result.errors.push(`${ifname}: cannot read its ARP settings: ${(error as Error).message}`);
      }
      continue;
    }
    for (const finding of manage ? findings(ifname, all, own) : []) {
      if (!finding.fixable) continue;
      const to = WANTED[finding.key].write;
      const name = `net.ipv4.conf.${ifname}.${finding.key}`;
      try {
        files.write(ifname, finding.key, to);
        result.written.push(`${name}=${to} (was ${own[finding.key]})`);
        own = { ...own, [finding.key]: to };
      } catch (error) {
        result.errors.push(`${ifname}: cannot set ${name}=${to}: ${(error as Error).message}`);
      }
    }
    result.findings.push(...findings(ifname, all, own));
  }
  return result;
}

/**
 * The daemon's side: checks interfaces when they join a shared subnet (and everything again
 * after a reload), logs each finding once, and keeps the metrics. No timer polls the files:
 * the kernel announces none of these settings, and idle must stay idle.
 */
export class SysctlGuard {
  private checked = new Map<string, readonly SysctlFinding[]>();
  private reported = new Set<string>();

  constructor(
    private readonly files: ConfFiles,
    private readonly report: {
      warn(message: string): void;
      info(message: string): void;
      error(message: string): void;
      problems(count: number): void;
      failed(): void;
    },
  ) {}

  /** After a reload, every interface is read again (the mode may have changed, or the values). */
  forget(): void {
    this.checked.clear();
  }

  /** `shared`: the interfaces sharing an IPv4 subnet with another one (sorted names). */
  update(shared: readonly string[], manage: boolean): void {
    const fresh = shared.filter((ifname) => !this.checked.has(ifname));
    const gone = [...this.checked.keys()].filter((ifname) => !shared.includes(ifname));
    if (fresh.length === 0 && gone.length === 0) return;
    for (const ifname of gone) this.checked.delete(ifname);
    const result = checkSysctls(this.files, fresh, manage);
    for (const ifname of fresh) this.checked.set(ifname, result.findings.filter((f) => f.ifname === ifname));
    for (const line of result.written) this.report.info(`set ${line}`);
    for (const line of result.errors) {
      this.report.error(line);
      this.report.failed();
    }
    const current = [...this.checked.values()].flat();
    const messages = new Set(current.map((f) => f.message));
    for (const message of messages) if (!this.reported.has(message)) this.report.warn(message);
    this.reported = messages;
    this.report.problems(current.length);
  }
}
