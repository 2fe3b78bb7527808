// `node --import ./test/support/trace-imports.mjs …` appends the URL of every module the ES
// module loader loads to $TRACE_IMPORTS_FILE, one a line (packages by their entry point;
// what a CommonJS package require()s inside itself is not listed).
import { register } from 'node:module';

register(
  `data:text/javascript,${encodeURIComponent(`
    import { appendFileSync } from 'node:fs';
    export async function load(url, context, next) {
      if (!url.startsWith('node:')) appendFileSync(${JSON.stringify(process.env.TRACE_IMPORTS_FILE)}, url + '\\n');
      return next(url, context);
    }
  `)}`,
);
