// Follows a file another process appends lines to (a daemon's log, `ip monitor`'s output):
// the writer never blocks on a slow reader, as it would on a full pipe.
import { closeSync, openSync, readSync, watch, type FSWatcher } from 'node:fs';

export class FileLines {
  private readonly fd: number;
  private readonly watcher: FSWatcher;
  private readonly buffer = Buffer.allocUnsafe(1 << 16);
  private partial = '';

  constructor(
    path: string,
    private readonly onLines: (lines: string[]) => void,
  ) {
    this.fd = openSync(path, 'r');
    this.watcher = watch(path, () => this.read());
  }

  /** Reads what was appended since; also call it when a change notification may have been missed. */
  read(): void {
    let text = '';
    for (let n; (n = readSync(this.fd, this.buffer, 0, this.buffer.length, null)) > 0; ) text += this.buffer.toString('utf8', 0, n);
    if (!text) return;
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    this.onLines(lines);
  }

  close(): void {
    this.read();
    this.watcher.close();
    closeSync(this.fd);
  }
}
