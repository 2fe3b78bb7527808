// prepack: writes the man pages the manual generates into man/, where package.json's "man"
// field names them, so `npm install -g` installs symroute(8) and symroute.yaml(5) too.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const manual = await import(new URL('../dist/manual.js', import.meta.url).href);
mkdirSync(new URL('../man/', import.meta.url), { recursive: true });
for (const name of manual.MAN_PAGES) writeFileSync(new URL(`../man/${name}`, import.meta.url), manual.manPage(name, version));
