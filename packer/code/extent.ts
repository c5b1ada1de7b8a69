/**
 * Where the function starting at an address ends, for code no symbol or
 * unwind entry describes (crti's _init, hand-written assembly): follow the
 * control flow from the entry and take the furthest byte reached.
 */
import { Flow, decode, endsStraightLine, newInsn, relDisplacement } from '../../elf/x86/decode.js';
import type { Build, FunctionInfo } from '../model.js';

const MAX_EXTENT = 64 * 1024;

export function functionAt(build: Build, start: number): FunctionInfo {
  let index = starts.get(build);
  if (!index) starts.set(build, (index = new Map(build.functions().map((f) => [f.start, f]))));
  return (
    index.get(start) ?? {
      name: undefined,
      start,
      end: start + extentByFlow(build, start, index),
      exported: false,
    }
  );
}

const starts = new WeakMap<Build, Map<number, FunctionInfo>>();

/** `known`: other functions by start, where a jump is a tail call and the walk stops. */
function extentByFlow(build: Build, start: number, known: ReadonlyMap<number, FunctionInfo>): number {
  const buf = build.bytesAt(start, Math.min(MAX_EXTENT, build.extentAt(start)));
  const ins = newInsn();
  const todo = [0];
  const seen = new Set<number>();
  let end = 1;
  while (todo.length > 0) {
    let p = todo.pop()!;
    while (p < buf.length && !seen.has(p)) {
      seen.add(p);
      if (!decode(buf, p, buf.length, ins)) return Math.max(end, p + 1);
      const next = p + ins.length;
      end = Math.max(end, next);
      if (ins.relOff >= 0 && (ins.flow === Flow.Jcc || ins.flow === Flow.Jmp)) {
        const rel = relDisplacement(buf, p, ins);
        const t = next + rel;
        if (t >= 0 && t < buf.length && !known.has(start + t)) todo.push(t);
      }
      if (endsStraightLine(ins.flow)) break;
      p = next;
    }
  }
  return end;
}
