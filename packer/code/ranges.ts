/** Sets of addresses as sorted, merged [start, end) intervals. */

export class Ranges {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** `spans` as [start, end) pairs, in any order, overlapping or not; empty spans are dropped. */
  constructor(spans: ReadonlyArray<readonly [number, number]>) {
    const sorted = spans.filter(([s, e]) => e > s).sort((x, y) => x[0] - y[0]);
    for (const [s, e] of sorted) {
      const last = this.ends.length - 1;
      if (last >= 0 && s <= this.ends[last]!) this.ends[last] = Math.max(this.ends[last]!, e);
      else {
        this.starts.push(s);
        this.ends.push(e);
      }
    }
  }

  get empty(): boolean {
    return this.starts.length === 0;
  }

  /** The smallest address in the set, and one past the largest (0, 0 when empty). */
  get hull(): [number, number] {
    return this.empty ? [0, 0] : [this.starts[0]!, this.ends[this.ends.length - 1]!];
  }

  /** Whether [start, end) holds an address of the set. */
  intersects(start: number, end: number): boolean {
    // The first interval that ends after `start`; it intersects when it begins before `end`.
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.starts.length && this.starts[lo]! < end && start < end;
  }

  spans(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }

  has(vaddr: number): boolean {
    return this.intersects(vaddr, vaddr + 1);
  }
}
