// Build step: bakes the commit into dist/build-info.json for symroute_build_info. The
// daemon never runs programs, so it cannot ask git itself. SYMROUTE_COMMIT wins (a
// container build has no .git); without either the commit is "unknown".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

function commit() {
  if (process.env.SYMROUTE_COMMIT) return process.env.SYMROUTE_COMMIT;
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

writeFileSync(new URL('../dist/build-info.json', import.meta.url), `${JSON.stringify({ commit: commit() })}\n`);
