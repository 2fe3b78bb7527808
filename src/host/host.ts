// What symroute tends on the host beside the kernel's routing state: the ARP sysctls of NICs
// sharing a subnet (/proc/sys) and table names for ip(8) (iproute2 files). Behind one
// interface, injected like the sockets, so a pass does no file I/O of its own.
import type { Config } from '../config/config.js';
import type { Plan } from '../domain/planner.js';
import { NameFiles, resolveDir } from './names.js';
import { ConfFiles, SysctlGuard } from './sysctl.js';

export interface Host {
  /** The interfaces sharing an IPv4 subnet with another (sorted names), under `config.sysctl`. */
  sharedSubnets(ifnames: readonly string[], manage: boolean): void;
  /** The whole plan, when its tables changed: they get names for ip(8). */
  tablesPlanned(plan: Plan, protocol: number): void;
  /** A reload: settings are read again, names written where the new config says. */
  reconfigure(config: Config): void;
}

/** What the host's files tell the operator. */
export interface HostReport {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  sysctlProblems(count: number): void;
  sysctlFailed(): void;
  nameFileFailed(): void;
}

/** The real host: /proc/sys/net/ipv4/conf and the iproute2 directory. */
export class HostFiles implements Host {
  private readonly sysctls: SysctlGuard;
  private names: NameFiles;
  private iproute2Dir: Config['iproute2Dir'];

  constructor(config: Config, private readonly report: HostReport) {
    this.sysctls = new SysctlGuard(new ConfFiles(), {
      warn: (message) => report.warn(message),
      info: (message) => report.info(message),
      error: (message) => report.error(message),
      problems: (count) => report.sysctlProblems(count),
      failed: () => report.sysctlFailed(),
    });
    this.iproute2Dir = config.iproute2Dir;
    this.names = this.nameFiles();
  }

  sharedSubnets(ifnames: readonly string[], manage: boolean): void {
    this.sysctls.update(ifnames, manage);
  }

  tablesPlanned(plan: Plan, protocol: number): void {
    this.names.update(plan, protocol);
  }

  reconfigure(config: Config): void {
    if (config.iproute2Dir !== this.iproute2Dir) {
      this.iproute2Dir = config.iproute2Dir;
      this.names = this.nameFiles();
    }
    this.sysctls.forget();
  }

  private nameFiles(): NameFiles {
    const { dir, why } = resolveDir(this.iproute2Dir);
    if (dir) this.report.info(`naming tables for ip(8) in ${dir} (${why})`);
    else this.report.debug(`not naming tables for ip(8): ${why}`);
    return new NameFiles(dir, {
      info: (message) => this.report.info(message),
      warn: (message) => this.report.warn(message),
      failed: () => this.report.nameFileFailed(),
    });
  }
}
