// `run --watch-config`: reloads when the config file changes, however it was changed —
// written in place, replaced by an editor that writes a new file and renames it over the
// old one, or swapped by the kubelet, which updates a mounted ConfigMap by re-pointing the
// `..data` symlink in the file's directory (the path itself is a symlink through `..data`,
// so the file's own inode never sees a write). Hence directories are watched, not the file,
// and a change is judged by what the path now holds, not by which events arrived.
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { readConfigBytes } from '../config/config.js';
import type { Logger } from './log.js';

/**
 * How long the directory must stay quiet before the file is read: writers take several steps
 * (truncate then write; write then rename; the kubelet writes a new directory, then swaps
 * the link), and a half-written file would be rejected as a reload failure.
 */
const SETTLE_MS = 200;

export class ConfigFileWatcher {
  /** inotify watches by directory: the path's own, and the one its symlinks resolve into. */
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | null = null;
  private content: string;
  private stopped = false;

  constructor(
    private readonly path: string,
    private readonly changed: () => void,
    private readonly log: Logger,
  ) {
    this.content = this.read();
    this.rewatch();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  private settle(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.rewatch();
      const content = this.read();
      if (content === this.content) return; // touched, or swapped for the same text
      this.content = content;
      this.log.info(`config file ${this.path} changed, reloading`);
      this.changed();
    }, SETTLE_MS);
  }

  /**
   * The file's bytes; a missing, unreadable or oversize file is a state too (the reload
   * reports it). Read with the config's own bound: a 50 MB file must not be read here either.
   */
  private read(): string {
    try {
      const bytes = readConfigBytes(this.path);
      return bytes === null ? 'too large' : `bytes\0${bytes.toString('latin1')}`;
    } catch (error) {
      return `error\0${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    }
  }

  private rewatch(): void {
    const wanted = new Set([dirname(this.path)]);
    try {
      wanted.add(dirname(realpathSync(this.path)));
    } catch {
      // No file yet (or a dangling link): its directory alone is watched until it appears.
    }
    for (const [directory, watcher] of this.watchers) {
      if (wanted.has(directory)) continue;
      watcher.close();
      this.watchers.delete(directory);
    }
    for (const directory of wanted) {
      if (this.watchers.has(directory)) continue;
      try {
        const watcher = watch(directory, { persistent: false }, () => this.settle());
        // A watched directory that is removed (the kubelet's old ..<timestamp> one) ends its watch.
        watcher.on('error', () => this.forget(directory, watcher));
        watcher.on('close', () => this.forget(directory, watcher));
        this.watchers.set(directory, watcher);
      } catch (error) {
        if (directory === dirname(this.path)) {
          this.log.error({ err: error }, `cannot watch ${directory} for changes to ${this.path}: ${(error as Error).message}`);
        }
      }
    }
  }

  private forget(directory: string, watcher: FSWatcher): void {
    if (this.watchers.get(directory) === watcher) this.watchers.delete(directory);
    watcher.close();
  }
}
