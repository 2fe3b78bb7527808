// CI runs exactly what the README tells a new user to run: the two must not drift apart.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/lab.js';

/** The README's set-up commands: the first ```sh block, comments dropped. */
function readmeSetupCommands(): string[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const block = /```sh\n([\s\S]*?)```/.exec(readme);
  expect(block, 'README has no ```sh block').not.toBeNull();
  return block![1]!.split('\n').map((line) => line.replace(/\s+#.*$/, '').trim()).filter(Boolean);
}

describe('README and CI', () => {
  it('.ci/run runs exactly the README test command', () => {
    const commands = readmeSetupCommands();
    const testCommand = commands.find((c) => c.endsWith('npm test'));
    expect(testCommand, commands.join('\n')).toBeDefined();
    const ci = readFileSync(join(REPO, '.ci/run'), 'utf8')
      .split('\n')
      .filter((line) => line.trim() && !line.startsWith('#') && !/^(set|cd) /.test(line));
    expect(ci).toEqual([testCommand]);
  });

  it('fetches the apt lists before installing anything, so a fresh machine works', () => {
    for (const command of readmeSetupCommands().filter((c) => c.includes('apt-get install'))) {
      expect(command).toMatch(/^apt-get update && /);
    }
  });
});
