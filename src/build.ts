// What this build is, for --version and symroute_build_info: the package's version and the
// commit that scripts/write-build-info.mjs baked into dist/ at build time.
import { readFileSync } from 'node:fs';

export interface BuildInfo {
  readonly version: string;
  readonly commit: string;
}

export function readBuildInfo(): BuildInfo {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  let commit = 'unknown'; // a tree built without the build script (or from src/) knows no commit
  try {
    commit = (JSON.parse(readFileSync(new URL('./build-info.json', import.meta.url), 'utf8')) as { commit: string }).commit;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return { version, commit };
}
