import { getSystemErrorMap } from 'node:util';

const systemErrors = getSystemErrorMap();

export function errnoName(errno: number): string {
  return systemErrors.get(-errno)?.[0] ?? `errno ${errno}`;
}

/**
 * A request the kernel refused. The message says what was being done and why the kernel
 * said no, in its own words when it gave them (extended ack):
 * `adding route default via 198.18.3.1 dev s3 table 1004: Nexthop has invalid gateway (EINVAL)`.
 */
export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  readonly code: string;
  constructor(
    readonly action: string,
    readonly errno: number,
    readonly extackMessage?: string,
  ) {
    const code = errnoName(errno);
    const reason = extackMessage ?? systemErrors.get(-errno)?.[1] ?? 'failed';
    super(`${action}: ${reason} (${code})`);
    this.code = code;
  }
}
