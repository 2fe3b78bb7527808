// Shell-style globs of interface names (`interfaces.include`/`exclude`): checked when the
// config is read, matched by the planner.
// Globs come from the config, so there are few; a link's name is matched on every
// reconcile pass, so each is compiled once.
const compiledGlobs = new Map<string, RegExp | string>();

function compileGlob(pattern: string): RegExp | string {
  let compiled = compiledGlobs.get(pattern);
  if (compiled === undefined) {
    compiled = translateGlob(pattern);
    compiledGlobs.set(pattern, compiled);
  }
  return compiled;
}

/** Translates a shell glob into an anchored RegExp, or says why it cannot. */
function translateGlob(pattern: string): RegExp | string {
  const chars = [...pattern];
  let source = '';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') source += '.*';
    else if (c === '?') source += '.';
    else if (c !== '[') source += c.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
    else {
      const negated = chars[i + 1] === '!' || chars[i + 1] === '^';
      const start = i + (negated ? 2 : 1);
      // As in the shell, a ']' first in the class is a member rather than its end.
      const end = chars.indexOf(']', start + 1);
      if (end < 0) return "unbalanced '['";
      const members = chars.slice(start, end).join('').replace(/[\\^[\]]/g, '\\$&');
      source += `[${negated ? '^' : ''}${members}]`;
      i = end;
    }
  }
  try {
    return new RegExp(`^${source}$`, 'su');
  } catch {
    return 'reversed range in a character class';
  }
}

export function globProblem(pattern: string): string | undefined {
  const compiled = compileGlob(pattern);
  return typeof compiled === 'string' ? compiled : undefined;
}

/** Shell-style whole-name match; an invalid pattern matches nothing. */
export function matchesGlob(pattern: string, name: string): boolean {
  const glob = compileGlob(pattern);
  return typeof glob !== 'string' && glob.test(name);
}
