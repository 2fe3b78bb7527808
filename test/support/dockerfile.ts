// The Dockerfile without Docker (no engine or registry here): each stage is a directory
// standing in for the image's root, COPY copies from the build context (as .dockerignore
// lets it) or from an earlier stage, RUN runs in the stage's WORKDIR with its ARGs in the
// environment. The base images are not emulated (nor are ARGs before the first FROM, which
// only name them): this machine's Node.js and toolchain stand in for theirs. Any other
// instruction is refused, so the emulation cannot silently drift from the file.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

interface Stage {
  readonly name: string | undefined;
  readonly root: string;
  workdir: string;
  readonly args: Record<string, string>;
}

/** Whether the build context sends `path` (top-level name) under .dockerignore's rules, last match wins. */
function sentByContext(context: string, path: string): boolean {
  const ignore = join(context, '.dockerignore');
  if (!existsSync(ignore)) return true;
  const top = path.replace(/^\.\//, '').split('/')[0]!;
  let sent = true;
  for (const raw of readFileSync(ignore, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/\/$/, '');
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]*').replaceAll('?', '[^/]')}$`);
    if (regex.test(top)) sent = negated;
  }
  return sent;
}

/**
 * Builds `Dockerfile` from `context` into `workspace` and returns the last stage's root:
 * what the image's filesystem would hold (apart from its base image).
 */
export async function buildStages(context: string, workspace: string): Promise<string> {
  const lines = readFileSync(join(context, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages: Stage[] = [];
  const inStage = (stage: Stage, path: string) => join(stage.root, path.startsWith('/') ? path : join(stage.workdir, path));
  for (const line of lines) {
    const [instruction, ...words] = line.split(/\s+/);
    const stage = stages.at(-1);
    if (instruction === 'FROM') {
      const name = words[1]?.toUpperCase() === 'AS' ? words[2] : undefined;
      stages.push({ name, root: join(workspace, `stage-${stages.length}`), workdir: '/', args: {} });
      mkdirSync(stages.at(-1)!.root, { recursive: true });
    } else if (!stage && instruction === 'ARG') {
      // A base image's name; the base is not emulated.
    } else if (!stage) {
      throw new Error(`Dockerfile: ${instruction} before FROM`);
    } else if (instruction === 'WORKDIR') {
      stage.workdir = words[0]!;
      mkdirSync(inStage(stage, '.'), { recursive: true });
    } else if (instruction === 'ARG') {
      const [key, value = ''] = words[0]!.split('=');
      stage.args[key!] = value;
    } else if (instruction === 'COPY') {
      const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
      const destination = words.pop()!;
      const source = from === undefined ? undefined : stages.find((s) => s.name === from);
      if (from !== undefined && !source) throw new Error(`Dockerfile: COPY --from=${from}: no such stage`);
      // `COPY . dest/` sends the context's top-level entries that .dockerignore lets through.
      const paths = !source && words.length === 1 && words[0] === '.' ? readdirSync(context).filter((entry) => sentByContext(context, entry)) : words;
      for (const path of paths) {
        if (!source && !sentByContext(context, path)) throw new Error(`Dockerfile: COPY ${path}: excluded by .dockerignore`);
        const origin = source ? join(source.root, path) : join(context, path);
        const target = inStage(stage, destination);
        const into = destination.endsWith('/') || paths.length > 1 ? join(target, path.endsWith('/') ? '' : path.split('/').pop()!) : target;
        cpSync(origin, into, { recursive: true });
      }
    } else if (instruction === 'RUN') {
      await run('sh', ['-c', line.slice('RUN'.length).trim()], {
        cwd: inStage(stage, '.'),
        env: { ...process.env, ...stage.args },
        maxBuffer: 64 * 1024 * 1024,
      });
    } else if (instruction !== 'ENTRYPOINT' && instruction !== 'CMD') {
      throw new Error(`Dockerfile: this emulation does not know ${instruction}`);
    }
  }
  return stages.at(-1)!.root;
}
