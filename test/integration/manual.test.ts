// The manual is written once (src/manual.ts); --help, the man pages, the completions, the
// packaged default config and the README all come from it or quote it. These tests keep the
// copies honest: each one agrees with the source, and the source with the code.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { defaultConfig, parseConfig } from '../../src/config/config.js';
import {
  COMMANDS, CONFIG_REFERENCE, commandHelp, completionScript, defaultConfigFile, exitCodesMarkdown, mainHelp, manPage,
  MAN_PAGES,
} from '../../src/manual.js';
import { REPO } from '../support/lab.js';

const run = promisify(execFile);
const CLI = join(REPO, 'dist/cli.js');
const README = readFileSync(join(REPO, 'README.md'), 'utf8');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('the manual', () => {
  it('is what --help prints, for the program and for every command', async () => {
    expect((await cli(['--help'])).stdout).toBe(mainHelp());
    const results = await Promise.all(COMMANDS.map((command) => cli([command.name, '--help'])));
    for (const [k, command] of COMMANDS.entries()) {
      expect(results[k]!.code, command.name).toBe(0);
      expect(results[k]!.stdout, command.name).toBe(commandHelp(command.name));
    }
  });

  it('documents only options the parser accepts', async () => {
    // All of a command's options, then --help: parsing succeeds (exit 0) only if each exists.
    for (const command of COMMANDS) {
      const args = command.options.flatMap((option) => {
        const [flag, argument] = option.flag.split(' ');
        return [flag!, ...(argument ? ['x'] : [])];
      });
      const result = await cli([command.name, ...args, '--help']);
      expect(result.code, `${command.name} ${args.join(' ')}: ${result.stderr}`).toBe(0);
    }
  });

  it('is quoted word for word by the README: the config reference and the exit codes', () => {
    const config = /## Config\n\n(.*)\n\n```yaml\n([\s\S]*?)```/.exec(README);
    expect(config, 'README has a ## Config section with a yaml block').not.toBeNull();
    expect(config![2]).toBe(CONFIG_REFERENCE);
    expect(README).toContain(`${exitCodesMarkdown()}\n`);
  });

  it('gives man pages that name every command, option and exit code, and that man(1) renders without warnings', async () => {
    const page = manPage('symroute.8', '0.0.0');
    for (const command of COMMANDS) {
      expect(page).toContain(`.SS \\fB${command.name.replace(/-/g, '\\-')}\\fR`);
      for (const option of [...command.options, ...(command.operands ?? [])]) {
        expect(page).toContain(`\\fB${option.flag.split(' ')[0]!.replace(/-/g, '\\-')}\\fR`);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), 'symroute-man-'));
    try {
      for (const name of MAN_PAGES) {
        const file = join(dir, name);
        writeFileSync(file, manPage(name, '0.0.0'));
        const { stdout, stderr } = await run('man', ['--warnings', '-E', 'UTF-8', '-l', file], {
          env: { ...process.env, MANWIDTH: '80', MAN_KEEP_FORMATTING: '0', MANPAGER: 'cat', PAGER: 'cat' },
        });
        expect(stderr, name).toBe('');
        expect(stdout.length, name).toBeGreaterThan(200);
      }
      expect(manPage('symroute.yaml.5', '0.0.0')).toContain('priority: 30000');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives a packaged config file that is all comments and means all defaults', () => {
    const text = defaultConfigFile();
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^#/);
    expect(parseConfig(text, 'symroute.yaml')).toEqual(defaultConfig());
    // Uncommented (after the header, which ends at a bare "#"), it is the reference, and it
    // parses; the exclude list is elided there, so it is left out.
    const body = text.split('\n#\n')[1]!.split('\n').map((line) => line.replace(/^# ?/, ''));
    expect(body.join('\n').replace(', ...]', ', …]')).toBe(CONFIG_REFERENCE);
    const uncommented = body.filter((line) => !/exclude:|replaces the default/.test(line)).join('\n');
    expect(() => parseConfig(uncommented, 'uncommented.yaml')).not.toThrow();
  });

  it('gives completion scripts the shells accept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'symroute-completion-'));
    try {
      const bash = join(dir, 'symroute.bash');
      writeFileSync(bash, completionScript('bash'));
      await run('bash', ['-n', bash]);
      // Loaded, it completes commands and option values.
      const { stdout } = await run('bash', [
        '-c',
        `source ${bash}; COMP_WORDS=(symroute run --log-format ""); COMP_CWORD=3; _symroute; echo "\${COMPREPLY[@]}";` +
          ` COMP_WORDS=(symroute st); COMP_CWORD=1; _symroute; echo "\${COMPREPLY[@]}"`,
      ]);
      expect(stdout).toBe('text json\nstatus\n');
      const zsh = completionScript('zsh');
      expect(zsh.startsWith('#compdef symroute\n')).toBe(true);
      for (const command of COMMANDS) expect(zsh).toContain(`    ${command.name})`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
