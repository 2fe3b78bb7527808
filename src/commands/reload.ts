// `symroute reload`: asks the daemon running in this network namespace, over its control
// socket (src/service/control.ts), to re-read its config — the very path SIGHUP takes —
// and reports the verdict. Made for systemd's ExecReload=: the unit's reload then ends only
// when the new config is applied, and fails when it was rejected.
import { controlPaths, requestReload } from '../service/control.js';
import type { Output } from './inspect.js';

export const EXIT_NOT_RUNNING = 3;

/**
 * Exit 0 when applied; 1 when rejected (each problem printed), refused, or when what holds the
 * socket is not to be trusted; 3 when no daemon runs here.
 */
export async function reloadCommand(io: Output): Promise<number> {
  const paths = controlPaths();
  const outcome = await requestReload(paths);
  if (outcome === null) {
    io.err(`symroute: no symroute is running in this network namespace (nothing listens on ${paths.socket})`);
    return EXIT_NOT_RUNNING;
  }
  if (outcome.applied) {
    io.out(`reloaded: ${outcome.summary}`);
    return 0;
  }
  if ('untrusted' in outcome) {
    io.err(`symroute: ${outcome.untrusted}`);
    return 1;
  }
  if ('refused' in outcome) {
    io.err(`symroute: reload refused: ${outcome.refused}`);
    return 1;
  }
  io.err('symroute: reload rejected, the daemon keeps its running config:');
  for (const problem of outcome.problems) io.err(problem);
  return 1;
}
