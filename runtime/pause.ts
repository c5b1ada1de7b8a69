/**
 * Measures how long threads of the target are stopped, the figure the
 * trigger reports ("the process was paused for ..."). A pause starts when
 * the first thread is asked to stop and ends when the last stopped thread is
 * resumed or detached; a borrow that turns into a full stop starts a new,
 * 'all' pause, since the time everything was stopped is what matters.
 */

/** One interval during which threads of the target were stopped. */
export interface PauseRecord {
  /** 'all': every thread stopped (the switch); 'borrow': one thread, the others running. */
  kind: 'all' | 'borrow';
  threads: number;
  ms: number;
}

export class PauseClock {
  readonly records: PauseRecord[] = [];
  private start: number | undefined;
  private kind: PauseRecord['kind'] = 'borrow';
  private threads = 1;

  begin(kind: PauseRecord['kind']): void {
    if (this.start === undefined) {
      this.start = performance.now();
      this.kind = kind;
      this.threads = 1;
    } else if (kind === 'all' && this.kind !== 'all') {
      this.end();
      this.begin('all');
    }
  }

  /** How many threads the current pause holds (set once they are all stopped). */
  holding(threads: number): void {
    this.threads = threads;
  }

  end(): PauseRecord | undefined {
    if (this.start === undefined) return undefined;
    const rec: PauseRecord = { kind: this.kind, threads: this.threads, ms: performance.now() - this.start };
    this.records.push(rec);
    this.start = undefined;
    return rec;
  }
}
