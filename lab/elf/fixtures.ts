/**
 * The gcc-built fixtures of the ELF tests: one C source per feature, linked
 * in the variants the reader must handle. Built on first use, cached by
 * lab/compile.ts.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../compile.js';
import { FIXTURES } from '../root.js';

const LIB = ['-shared', '-fPIC', '-O1', '-Wl,--build-id'];

export interface Fixture {
  name: string;
  path: string;
  /** What the test expects of it beyond the readelf comparison. */
  kind: 'library' | 'pie' | 'exec';
}

function basic(out: string, extra: string[]): () => string {
  return () =>
    compile({ sources: ['elf/basic.c'], out, flags: [...LIB, '-Wl,-soname,libbasic.so.1', ...extra] });
}

/** A copy of `path` processed by `strip` with `mode`, next to it. */
function stripped(path: string, mode: '--strip-all' | '--strip-unneeded'): string {
  const out = `${path}${mode === '--strip-all' ? '.strip-all' : '.strip-unneeded'}`;
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync('strip', [mode, '-o', tmp, path]);
    renameSync(tmp, out);
  }
  return out;
}

/**
 * A copy without any section headers (e_shoff, e_shnum, e_shstrndx zeroed),
 * like sstrip output or a loaded object: the reader must find everything
 * through the dynamic section alone.
 */
export function withoutSectionHeaders(path: string): string {
  const out = `${path}.noshdr`;
  if (!existsSync(out)) {
    const b = Buffer.from(readFileSync(path));
    b.writeBigUInt64LE(0n, 40);
    b.writeUInt16LE(0, 58);
    b.writeUInt16LE(0, 60);
    b.writeUInt16LE(0, 62);
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, b);
    renameSync(tmp, out);
  }
  return out;
}

const builders: Record<string, { kind: Fixture['kind']; build: () => string }> = {
  'full-relro': { kind: 'library', build: basic('libbasic.so.1', ['-Wl,-z,relro,-z,now']) },
  'partial-relro': { kind: 'library', build: basic('libbasic.so.1', ['-Wl,-z,relro,-z,lazy']) },
  'no-relro': { kind: 'library', build: basic('libbasic.so.1', ['-Wl,-z,norelro,-z,lazy']) },
  symbolic: { kind: 'library', build: basic('libbasic.so.1', ['-Wl,-Bsymbolic']) },
  relr: { kind: 'library', build: basic('libbasic.so.1', ['-Wl,-z,pack-relative-relocs,-z,relro,-z,now']) },
  'sysv-hash': { kind: 'library', build: basic('libbasic.so.1', ['-Wl,--hash-style=sysv']) },
  'both-hash': { kind: 'library', build: basic('libbasic.so.1', ['-Wl,--hash-style=both']) },
  'strip-all': { kind: 'library', build: () => stripped(builders['partial-relro']!.build(), '--strip-all') },
  'strip-unneeded': {
    kind: 'library',
    build: () => stripped(builders['full-relro']!.build(), '--strip-unneeded'),
  },
  tls: {
    kind: 'library',
    build: () =>
      compile({ sources: ['elf/tls.c'], out: 'libtls.so', flags: [...LIB, '-Wl,-soname,libtls.so'] }),
  },
  'tls-desc': {
    kind: 'library',
    build: () =>
      compile({
        sources: ['elf/tls.c'],
        out: 'libtlsdesc.so',
        flags: [...LIB, '-mtls-dialect=gnu2', '-Wl,-soname,libtlsdesc.so'],
      }),
  },
  versioned: {
    kind: 'library',
    build: () => {
      const map = join(fixtureDir(), 'versioned.map');
      // compile() keys its cache on sources and flags: put the script's content in the flags too.
      const key = createHash('sha256').update(readFileSync(map)).digest('hex').slice(0, 16);
      return compile({
        sources: ['elf/versioned.c'],
        out: 'libver.so.1',
        flags: [
          ...LIB,
          `-DULP_MAP_KEY=${key}`,
          '-Wl,-soname,libver.so.1',
          `-Wl,--version-script=${map}`,
          '-Wl,--hash-style=both',
        ],
      });
    },
  },
  ifunc: {
    kind: 'library',
    build: () =>
      compile({ sources: ['elf/ifunc.c'], out: 'libifunc.so', flags: [...LIB, '-Wl,-soname,libifunc.so'] }),
  },
  // PT_INTERP without DT_SONAME: a library with DT_FLAGS_1 (no DF_1_PIE), and one without, which reads as an old PIE.
  'runnable-lib': {
    kind: 'library',
    build: () =>
      compile({
        sources: ['elf/basic.c', 'elf/interp.c'],
        out: 'librunnable.so',
        flags: [...LIB, '-Wl,-z,now'],
      }),
  },
  'runnable-old': {
    kind: 'pie',
    build: () =>
      compile({
        sources: ['elf/basic.c', 'elf/interp.c'],
        out: 'librunnable-old.so',
        flags: [...LIB, '-Wl,-z,lazy'],
      }),
  },
  'exe-nopie': {
    kind: 'exec',
    build: () =>
      compile({
        sources: ['elf/exe.c'],
        out: 'exe-nopie',
        flags: ['-O1', '-no-pie', '-fno-pie', '-Wl,--build-id'],
        libs: [builders['full-relro']!.build()],
      }),
  },
  'exe-pie': {
    kind: 'pie',
    build: () =>
      compile({
        sources: ['elf/exe.c'],
        out: 'exe-pie',
        flags: ['-O1', '-pie', '-fPIE', '-Wl,--build-id'],
        libs: [builders['full-relro']!.build()],
      }),
  },
};

function fixtureDir(): string {
  // versioned.map is found next to the C sources compile() resolves.
  return join(FIXTURES, 'elf');
}

export const FIXTURE_NAMES = Object.keys(builders);

export function fixture(name: string): Fixture {
  const b = builders[name];
  if (!b) throw new Error(`no fixture ${name}`);
  return { name, path: b.build(), kind: b.kind };
}
