// Writes what the manual (dist/manual.js) generates into a directory tree rooted at argv[2]:
// man pages, shell completions and the commented default config, where a package puts them.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [root, version] = process.argv.slice(2);
if (!root || !version) throw new Error('usage: node packaging/docs.mjs ROOT VERSION');
const manual = await import(new URL('../dist/manual.js', import.meta.url).href);

function write(path, text) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
}

for (const name of manual.MAN_PAGES) {
  const section = name.slice(name.lastIndexOf('.') + 1);
  write(`usr/share/man/man${section}/${name}`, manual.manPage(name, version));
}
write('usr/share/bash-completion/completions/symroute', manual.completionScript('bash'));
write('usr/share/zsh/vendor-completions/_symroute', manual.completionScript('zsh'));
write('etc/symroute/symroute.yaml', manual.defaultConfigFile());
