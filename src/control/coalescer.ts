// One run at a time, requests coalesced: however many requests arrive while a run is under
// way (including from inside it), exactly one more run follows. The shape of the pass loop
// (scheduler.ts) and of reloads (service/service.ts).

export class Coalescer {
  private dirty = false;
  private state: 'idle' | 'scheduled' | 'running' = 'idle';
  private loop: Promise<void> = Promise.resolve();

  /**
   * `open`: whether runs may start (a closed coalescer keeps requests for when it opens).
   * `defer`: how the first run after idle starts (the scheduler starts it on setImmediate).
   */
  constructor(
    private readonly run: () => Promise<void>,
    private readonly open: () => boolean = () => true,
    private readonly defer: (start: () => void) => void = (start) => start(),
  ) {}

  /** A request is waiting for its run. */
  get pending(): boolean {
    return this.dirty;
  }

  /** A run is under way, about to start, or requested. */
  get active(): boolean {
    return this.state !== 'idle' || this.dirty;
  }

  request(): void {
    this.dirty = true;
    this.kick();
  }

  /** Starts the runs requested, if allowed (call when `open` may have become true). */
  kick(): void {
    if (this.state !== 'idle' || !this.dirty || !this.open()) return;
    this.state = 'scheduled';
    this.defer(() => {
      // 'running' from before the run's first line: nothing can start a second one beside it.
      this.state = 'running';
      this.loop = this.drain().finally(() => (this.state = 'idle'));
    });
  }

  /** Resolves when no run is under way or about to start. */
  async idle(): Promise<void> {
    while (this.state !== 'idle') {
      if (this.state === 'scheduled') await new Promise((resolve) => setImmediate(resolve));
      else await this.loop;
    }
  }

  private async drain(): Promise<void> {
    while (this.dirty && this.open()) {
      this.dirty = false;
      await this.run();
    }
  }
}
