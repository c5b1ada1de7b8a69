/**
 * tls: threads keep the old build's TLS module (its id, its static offset,
 * its blocks in every thread). The new build must use that block as it is:
 * same size, alignment and initialisation image (threads created later get
 * the old image), and every TLS variable at the same offset.
 */
import { STT_TLS, type ElfSymbol } from '../../elf/index.js';
import type { Category } from '../../patches/index.js';
import type { Build } from '../model.js';
import { Findings, listText } from './findings.js';
import type { Pair } from './pair.js';

function tlsSymbols(b: Build): Map<string, ElfSymbol> {
  const out = new Map<string, ElfSymbol>();
  for (const s of [...b.obj.symtab, ...b.obj.dynamicSymbols])
    if (s.defined && s.type === STT_TLS && !out.has(b.nameOf(s))) out.set(b.nameOf(s), s);
  return out;
}

/** The .tdata image with relocated words masked (ld.so rewrites them per thread anyway). */
function image(b: Build): Buffer {
  const t = b.obj.tls!;
  const bytes = Buffer.from(b.obj.readAt(t.vaddr, Number(t.filesz)));
  for (const r of b.relocsIn(Number(t.vaddr), Number(t.vaddr + t.filesz)))
    bytes.fill(0, Number(r.offset - t.vaddr), Number(r.offset - t.vaddr) + 8);
  return bytes;
}

export function analyzeTls({ from, to }: Pair): Category {
  const f = new Findings();
  const a = from.obj.tls;
  const b = to.obj.tls;
  if (!a && !b) return f.category('no TLS');
  if (!a || !b) {
    f.error(
      a ? 'TLS_REMOVED' : 'TLS_ADDED',
      `the ${a ? from.label : to.label} build has thread-local storage and the ${a ? to.label : from.label} build has none; the TLS module of a running process cannot be added or dropped`,
    );
    return f.category('TLS added or removed');
  }
  if (a.memsz !== b.memsz || a.filesz !== b.filesz || a.align !== b.align) {
    f.error(
      'TLS_LAYOUT_CHANGED',
      `the TLS block changes: ${a.memsz} bytes (${a.filesz} initialised, align ${a.align}) -> ${b.memsz} bytes (${b.filesz} initialised, align ${b.align}); running threads keep blocks of the old size`,
      undefined,
      {
        from: { memsz: Number(a.memsz), filesz: Number(a.filesz), align: Number(a.align) },
        to: { memsz: Number(b.memsz), filesz: Number(b.filesz), align: Number(b.align) },
      },
    );
  } else if (!image(from).equals(image(to))) {
    f.error(
      'TLS_IMAGE_CHANGED',
      'the initial values of thread-local variables change; threads created after the update would still get the old values',
    );
  }
  const sa = tlsSymbols(from);
  const sb = tlsSymbols(to);
  const moved = [...sa]
    .filter(([n, s]) => sb.has(n) && (sb.get(n)!.value !== s.value || sb.get(n)!.size !== s.size))
    .map(([n]) => n);
  if (moved.length)
    f.error(
      'TLS_SYMBOL_MOVED',
      `thread-local variables move or change size in the TLS block: ${listText(moved)}`,
      moved,
    );
  const added = [...sb.keys()].filter((n) => !sa.has(n));
  if (added.length)
    f.info(
      'TLS_SYMBOL_ADDED',
      `new thread-local variables in previously unused TLS bytes: ${listText(added)}`,
      added,
    );
  if ((from.obj.dynamic?.staticTls ?? false) !== (to.obj.dynamic?.staticTls ?? false))
    f.info(
      'TLS_STATIC_CHANGED',
      `DF_STATIC_TLS is ${to.obj.dynamic?.staticTls ? 'set' : 'cleared'} in the ${to.label} build`,
    );
  return f.category(`${a.memsz} bytes per thread`);
}
