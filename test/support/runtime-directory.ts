// Global set-up: every daemon and `symroute reload` the tests start keeps its lock and control
// socket in one temp directory ($RUNTIME_DIRECTORY, as systemd would pass it), never in the
// machine's own /run/symroute. One directory for all is what /run/symroute is: namespaces are
// told apart by the names inside. Mode 0755, as RuntimeDirectory= makes it, so that a test's
// unprivileged squatter sees into it but cannot write there.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const directory = mkdtempSync(join(tmpdir(), 'symroute-run-'));
  chmodSync(directory, 0o755);
  process.env.RUNTIME_DIRECTORY = directory;
  return () => rmSync(directory, { recursive: true, force: true });
}
