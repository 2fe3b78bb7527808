// Readable names for iproute2: `rt_tables.d/symroute.conf` names each table after its NIC
// (`1002 symroute-b0`) and `rt_protos.d/symroute.conf` names the protocol number, so that
// `ip rule` prints `from 198.18.1.1 lookup symroute-b0 proto symroute`. Each file is
// replaced atomically (written beside, then renamed) and only when its content changes.
//
// Where: `iproute2_dir`. `auto` means $RUNTIME_DIRECTORY/iproute2 under systemd (a directory
// the unprivileged service owns; the README links the two files into /etc/iproute2 once),
// else /etc/iproute2 — but only in the host's network namespace: a daemon in another one
// (a container, a test) must not rename the host's tables, and /run is shared between
// namespaces. Not writable is a warning, once.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Plan } from '../domain/planner.js';

const HOST_DIR = '/etc/iproute2';
const FILE = 'symroute.conf';
const HEADER = '# Written by symroute: its tables and protocol number, named for ip(8). Do not edit.\n';

/** `1002 symroute-b0` per planned table, in table order. */
export function tablesFile(plan: Plan): string {
  const lines = [...plan.interfaces]
    .sort((a, b) => a.table - b.table)
    .map((planned) => `${planned.table} symroute-${planned.link.name}\n`);
  return HEADER + lines.join('');
}

export const protocolsFile = (protocol: number): string => `${HEADER}${protocol} symroute\n`;

/** Why the automatic choice is what it is: a directory, or no names at all. */
export function automaticDir(env: NodeJS.ProcessEnv = process.env): { dir: string | false; why: string } {
  try {
    if (statSync('/proc/self/ns/net').ino === statSync('/proc/1/ns/net').ino) {
      const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
      if (runtime) return { dir: join(runtime, 'iproute2'), why: 'RUNTIME_DIRECTORY is set (systemd)' };
      return { dir: HOST_DIR, why: "running in the host's network namespace" };
    }
    return { dir: false, why: "not the host's network namespace: set iproute2_dir to name tables here" };
  } catch (error) {
    return { dir: false, why: `cannot tell whether this is the host's network namespace (${(error as Error).message})` };
  }
}

export interface NameFilesReport {
  info(message: string): void;
  warn(message: string): void;
  failed(): void;
}

/** The directory `iproute2_dir` stands for, and why (for the log). */
export function resolveDir(setting: string | false | 'auto'): { dir: string | false; why: string } {
  if (setting === 'auto') return automaticDir();
  return { dir: setting, why: 'iproute2_dir in the config' };
}

export class NameFiles {
  private readonly written = new Map<string, string>();
  private lastProblem: string | undefined;

  constructor(
    private readonly dir: string | false,
    private readonly report: NameFilesReport,
  ) {}

  update(plan: Plan, protocol: number): void {
    if (!this.dir) return;
    const problems = [
      this.write(join(this.dir, 'rt_protos.d', FILE), protocolsFile(protocol)),
      this.write(join(this.dir, 'rt_tables.d', FILE), tablesFile(plan)),
    ].filter((problem) => problem !== undefined);
    const problem = problems.length > 0 ? problems.join('; ') : undefined;
    // A read-only /etc is a fact of the host, not an emergency: say it once, keep routing.
    if (problem !== undefined && problem !== this.lastProblem) {
      this.report.warn(`${problem}; ip(8) will show table and protocol numbers instead of names`);
    }
    if (problem !== undefined) this.report.failed();
    this.lastProblem = problem;
  }

  /** Replaces `path` with `content` unless it already holds it; returns what went wrong, if anything. */
  private write(path: string, content: string): string | undefined {
    if (this.written.get(path) === content) return undefined;
    try {
      if (readFileSync(path, 'utf8') === content) {
        this.written.set(path, content);
        return undefined;
      }
    } catch {
      // Missing or unreadable: writing it is the answer either way, and reports the reason.
    }
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      // The directory ($RUNTIME_DIRECTORY/iproute2) and rt_tables.d/ may not exist yet. One
      // level at a time: a recursive mkdir reports a read-only file system as ENOENT.
      for (const directory of [dirname(dirname(path)), dirname(path)]) if (!existsSync(directory)) mkdirSync(directory);
      writeFileSync(temporary, content, { mode: 0o644 });
      renameSync(temporary, path);
      this.written.set(path, content);
      this.report.info(`wrote ${path}`);
      return undefined;
    } catch (error) {
      rmSync(temporary, { force: true });
      return `cannot write ${path}: ${(error as Error).message}`;
    }
  }
}
