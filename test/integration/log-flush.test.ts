// The daemon's log is written after the code that logged it (src/service/log.ts,
// DeferredLines): these prove that no way out of the process but SIGKILL loses a line —
// an uncaught exception and process.exit() in the very turn that logged, and a reader that
// stalls (a full, non-blocking pipe) — in real processes running the built logger.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../support/lab.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'symroute-log-flush-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LINES = 2000;
/** A process that logs LINES lines in one turn, then ends as `ending` says. */
const script = (ending: string) =>
  `import { createLogger } from ${JSON.stringify(join(REPO, 'dist/service/log.js'))};\n` +
  `const log = createLogger('info', 'json', {});\n` +
  `for (let i = 0; i < ${LINES}; i++) log.info({ i }, 'line ' + i + ' ' + 'x'.repeat(200));\n` +
  ending;

const numbered = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { i: number }).i);

const everyLine = Array.from({ length: LINES }, (_, i) => i);

describe('log lines at exit', () => {
  it('are all written when the process dies of an uncaught exception in the turn that logged them', async () => {
    const file = join(dir, 'uncaught.log');
    const error = await run('sh', ['-c', `exec "$0" --input-type=module -e "$1" > "$2"`, process.execPath, script(`throw new Error('fatal');`), file]).then(
      () => null,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(error?.code).toBe(1);
    expect(error?.stderr).toContain('fatal');
    expect(numbered(readFileSync(file, 'utf8'))).toEqual(everyLine);
  });

  it('are all written on process.exit() in the turn that logged them', async () => {
    const file = join(dir, 'exit.log');
    await run('sh', ['-c', `exec "$0" --input-type=module -e "$1" > "$2"`, process.execPath, script('process.exit(3);'), file]).catch((e: { code?: number }) =>
      expect(e.code).toBe(3),
    );
    expect(numbered(readFileSync(file, 'utf8'))).toEqual(everyLine);
  });

  it('wait out a reader that stalls: a full non-blocking pipe loses nothing and keeps the event loop turning', async () => {
    // stdout made non-blocking (as libuv makes a pipe it opens), ~450 KiB logged into a
    // 64 KiB pipe that is read only after the child has shown its event loop still turns.
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', `process.stdout._handle?.setBlocking?.(false);\n` + script(`setTimeout(() => process.stderr.write('turned\\n'), 50);`)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    const turned = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => ((stderr += chunk.toString()), stderr.includes('turned') && resolve()));
      child.on('exit', (code) => reject(new Error(`exited ${code} before its event loop turned: ${stderr}`)));
    });
    child.stdout.pause();
    await turned;
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stdout.resume();
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(numbered(out)).toEqual(everyLine);
  }, 20_000);
});
