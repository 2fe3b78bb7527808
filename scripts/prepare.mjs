// `npm ci` / `npm install` in a clone: compile dist/ with TypeScript. TypeScript is a dev
// dependency, so `npm ci --omit=dev` has no compiler; that is a production install of a
// tree whose dist/ is already built (the .deb build, a copied checkout) or not wanted, and
// it must not fail. Say what happened instead. (Tarball installs never run prepare: the
// tarball carries dist/, built by prepack.)
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

let compiler = true;
try {
  createRequire(import.meta.url).resolve('typescript/package.json');
} catch {
  compiler = false;
}
if (compiler) execSync('npm run build', { stdio: 'inherit' });
else if (existsSync(new URL('../dist/cli.js', import.meta.url))) {
  console.error('symroute: TypeScript is not installed (--omit=dev); using the dist/ already built');
} else {
  console.error('symroute: TypeScript is not installed (--omit=dev), so dist/ was not built: run `npm ci` with dev dependencies, or install the packed tarball (npm pack)');
}
