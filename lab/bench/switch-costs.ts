/**
 * What the primitives the switch uses cost inside the pause, measured on a
 * live target with every thread stopped: the evidence behind the pause
 * figures of scripts/bench-pause.ts (which grow with the number of GOT
 * slots) and behind the change suggested in docs/PERFORMANCE.md.
 *
 * The switch (runtime/loader/switch.ts, relink) re-reads every slot it may
 * rewrite and then writes the ones that change; the slots sit in the GOTs of
 * different objects, so each one is on its own page. Here the same slots
 * (every GLOB_DAT / JUMP_SLOT of `symbol` in every loaded object) are read
 * and written back with the value they hold, which changes nothing, in each
 * way side by side, inside one stop per repetition (order rotated):
 *   read, a page per slot        what readSlots does: one process_vm_readv per page
 *   read, one vectored call      one process_vm_readv with an iovec per slot
 *   write, /proc/PID/mem each    what Session.poke does: open, pwrite, close per run of slots
 *   write, one open fd           /proc/PID/mem opened once, one pwrite per slot
 *   write, PTRACE_POKEDATA       one ptrace call per slot word
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { parseElf } from '../../elf/index.js';
import { RelocType } from '../../elf/types.js';
import { readLinkMap, RemoteMemory, Session } from '../../runtime/index.js';
import { procMemWrite } from '../../runtime/memory.js';
import { bufferAddress, processVmReadv } from '../../runtime/sys/libc.js';
import * as pt from '../../runtime/sys/ptrace.js';
import { median } from './common.js';

export const SWITCH_PRIMITIVES = [
  'read, a page per slot',
  'read, one vectored call',
  'write, /proc/PID/mem each',
  'write, one open fd',
  'write, PTRACE_POKEDATA',
] as const;
export type SwitchPrimitive = (typeof SWITCH_PRIMITIVES)[number];

export interface SwitchCosts {
  symbol: string;
  slots: number;
  repetitions: number;
  /** Median ms for all slots, per primitive. */
  ms: Record<SwitchPrimitive, number>;
  /** Median stopAll() and resume() of the same stops, ms. */
  stopMs: number;
  resumeMs: number;
}

/** Every GOT slot (GLOB_DAT, JUMP_SLOT) of `symbol` in the objects the process has loaded. */
function slotsOf(pid: number, symbol: string): bigint[] {
  const out: bigint[] = [];
  for (const o of readLinkMap(pid).objects) {
    if (!o.path.startsWith('/') || o.name === 'linux-vdso.so.1') continue;
    let elf;
    try {
      elf = parseElf(readFileSync(o.path), { expect: 'any' });
    } catch {
      continue;
    }
    for (const r of elf.relocations) {
      if ((r.type === RelocType.GLOB_DAT || r.type === RelocType.JUMP_SLOT) && r.symbol?.name === symbol)
        out.push(o.bias + r.offset);
    }
  }
  return out;
}

function iovecs(entries: Array<{ base: bigint; len: number }>): Buffer {
  const b = Buffer.alloc(16 * entries.length);
  entries.forEach((e, i) => {
    b.writeBigUInt64LE(e.base, 16 * i);
    b.writeBigUInt64LE(BigInt(e.len), 16 * i + 8);
  });
  return b;
}

const word = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

export function measureSwitchCosts(pid: number, symbol: string, repetitions = 15): SwitchCosts {
  const slots = slotsOf(pid, symbol);
  if (slots.length === 0) throw new Error(`process ${pid} has no GOT slot of ${symbol}`);
  const mem = new RemoteMemory(pid);
  const samples = Object.fromEntries(SWITCH_PRIMITIVES.map((p) => [p, [] as number[]])) as Record<
    SwitchPrimitive,
    number[]
  >;
  const stops: number[] = [];
  const resumes: number[] = [];
  const session = Session.open(pid);
  try {
    for (let rep = 0; rep < repetitions; rep++) {
      let t = performance.now();
      session.stopAll();
      stops.push(performance.now() - t);
      const tid = session.tids()[0]!;
      // The values the slots hold at this stop: every write below puts the same value back.
      const values = slots.map((a) => mem.readU64(a));
      const run: Record<SwitchPrimitive, () => void> = {
        'read, a page per slot': () => {
          for (const a of slots) mem.tryRead(a & ~4095n, 4096);
        },
        'read, one vectored call': () => {
          const local = Buffer.alloc(8 * slots.length);
          const base = bufferAddress(local);
          const n = Number(
            processVmReadv(
              pid,
              iovecs(slots.map((_, i) => ({ base: base + BigInt(8 * i), len: 8 }))),
              slots.length,
              iovecs(slots.map((a) => ({ base: a, len: 8 }))),
              slots.length,
              0,
            ),
          );
          if (n !== 8 * slots.length) throw new Error(`process_vm_readv read ${n} bytes`);
        },
        'write, /proc/PID/mem each': () => {
          slots.forEach((a, i) => {
            if (!procMemWrite(pid, a, word(values[i]!))) throw new Error('procMemWrite failed');
          });
        },
        'write, one open fd': () => {
          const fd = openSync(`/proc/${pid}/mem`, 'r+');
          try {
            slots.forEach((a, i) => writeSync(fd, word(values[i]!), 0, 8, Number(a)));
          } finally {
            closeSync(fd);
          }
        },
        'write, PTRACE_POKEDATA': () => {
          slots.forEach((a, i) => pt.pokeData(tid, a, values[i]!));
        },
      };
      const order = SWITCH_PRIMITIVES.map((_, i) => SWITCH_PRIMITIVES[(i + rep) % SWITCH_PRIMITIVES.length]!);
      for (const p of order) {
        const t0 = performance.now();
        run[p]();
        samples[p].push(performance.now() - t0);
      }
      if (slots.some((a, i) => mem.readU64(a) !== values[i]))
        throw new Error('a slot changed while the process was stopped');
      t = performance.now();
      session.resume();
      resumes.push(performance.now() - t);
    }
  } finally {
    session.detach();
  }
  return {
    symbol,
    slots: slots.length,
    repetitions,
    ms: Object.fromEntries(SWITCH_PRIMITIVES.map((p) => [p, median(samples[p])])) as Record<
      SwitchPrimitive,
      number
    >,
    stopMs: median(stops),
    resumeMs: median(resumes),
  };
}
