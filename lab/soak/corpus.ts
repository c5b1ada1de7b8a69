/**
 * Bad input, through the commands, against a live target: a corpus of broken
 * bundles given to `ulp-trigger PID BUNDLE` (and to `ulp-pack --inspect`),
 * and broken ELF files given to `ulp-pack OLD NEW` and, packed into
 * otherwise consistent bundles, to ulp-trigger. Each must be refused with a
 * specific error code and its exit code (never INTERNAL_ERROR, never a hang
 * or a crash), ulp-pack must write nothing, and the target must be exactly as
 * before (mappings and every GOT word: lab/process-state.ts).
 *
 * test/integration/patches/ covers the bundle reader in-process; this is the same input
 * through the real commands, plus what only the trigger can see (a bundle
 * that is consistent but wrong for the process).
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parseElf } from '../../elf/index.js';
import {
  decodeBundle,
  encodeBundle,
  patchIdOf,
  serializeManifest,
  type Manifest,
} from '../../patches/index.js';
import { compile } from '../compile.js';
import { rawTar, type RawEntry } from '../patches/craft.js';
import { processState, ulpMappings } from '../process-state.js';
import type { Target } from '../target.js';
import { health, leftovers, parseRounds, type Reliable, type Runner } from './lib.js';
import { seededRandom } from '../random.js';

export interface CorpusEntry {
  name: string;
  group: string;
  tool: 'ulp-trigger' | 'ulp-pack';
  /** `{pid}` is replaced by the target's pid. */
  args: string[];
  /** Acceptable error codes (the first is the expected one); the exit code must be the one docs/CLI.md gives the code. */
  codes: string[];
  /** The exit code of the first code; -1: not run (a note), -2: fuzz (any refusal, never an internal error). */
  exit: number;
  /** ulp-pack: the output that must not appear. */
  output?: string;
  /** Default 60 s; a hang is reported as one. */
  timeoutMs?: number;
}

export interface CorpusResult {
  name: string;
  group: string;
  tool: string;
  exit: number | null;
  code: string | undefined;
  ms: number;
  ok: boolean;
  problems: string[];
  /** A line of the report, not a case that was run (e.g. how many flips were harmless). */
  note?: boolean;
}

/**
 * The exit code docs/CLI.md gives an error code, per command (the tables
 * "Exit codes of ulp-pack" and "Exit codes of ulp-trigger"). Kept here on
 * purpose, apart from the commands' own tables: the corpus checks the
 * commands against the documentation.
 */
export function documentedExit(tool: 'ulp-trigger' | 'ulp-pack', code: string): number {
  if (['INTERNAL_ERROR', 'ELF_INTERNAL', 'ELF_INVALID_ARGUMENT'].includes(code)) return 1;
  if (tool === 'ulp-pack') {
    if (
      ['PACK_INPUT_UNREADABLE', 'PACK_KEY_UNREADABLE', 'BUNDLE_READ_FAILED', 'BUNDLE_WRITE_FAILED'].includes(
        code,
      )
    )
      return 5;
    if (code === 'PACK_USAGE') return 64;
    return 3;
  }
  if (['BUNDLE_READ_FAILED', 'TRIGGER_KEY_UNREADABLE'].includes(code)) return 5;
  if (['TRIGGER_BUILD_MISMATCH', 'TRIGGER_SIGNATURE_UNVERIFIED'].includes(code)) return 3;
  if (['SWITCH_ROLLED_BACK', 'LOADER_ALIAS'].includes(code)) return 6;
  if (code === 'TRIGGER_USAGE') return 64;
  if (code.startsWith('TRIGGER_') || code.startsWith('LOADER_')) return 2;
  if (code.startsWith('PROC_')) return 4;
  return 3;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A tar (gzip'ed) of the given entries; the bundle framing written by hand. */
function tarBundle(entries: RawEntry[], opts: { end?: boolean } = {}): Buffer {
  return gzipSync(rawTar(entries, opts));
}

/** The manifest with `edit` applied and the patch id recomputed, so that only the edited fact is wrong. */
function edited(m: Manifest, edit: (m: Manifest) => void, keepPatchId = false): Manifest {
  const c = structuredClone(m);
  edit(c);
  if (!keepPatchId) c.patchId = patchIdOf(c.soname, c.builds.old, c.builds.new);
  return c;
}

/** A consistent bundle (hashes, sizes, patch id) around whatever builds and manifest facts are given. */
function consistent(
  base: Manifest,
  oldBuild: Buffer,
  newBuild: Buffer,
  edit: (m: Manifest) => void = () => {},
): Buffer {
  const m = edited(base, (x) => {
    x.builds.old.size = oldBuild.length;
    x.builds.old.sha256 = sha(oldBuild);
    x.builds.new.size = newBuild.length;
    x.builds.new.sha256 = sha(newBuild);
    edit(x);
  });
  return encodeBundle({ manifest: m, oldBuild, newBuild });
}

function entriesOf(manifest: Manifest | Buffer, oldBuild: Buffer, newBuild: Buffer): RawEntry[] {
  return [
    { name: 'ulp.json', data: Buffer.isBuffer(manifest) ? manifest : serializeManifest(manifest) },
    { name: 'new.so', data: newBuild },
    { name: 'old.so', data: oldBuild },
  ];
}

/** ELF header surgery on a copy. */
function patched(bytes: Buffer, at: number, value: number, width: 1 | 2 | 4 | 8): Buffer {
  const b = Buffer.from(bytes);
  if (width === 1) b.writeUInt8(value, at);
  else if (width === 2) b.writeUInt16LE(value, at);
  else if (width === 4) b.writeUInt32LE(value >>> 0, at);
  else b.writeBigUInt64LE(BigInt(value), at);
  return b;
}

/** Broken ELF files, each with the codes the reader may give it. */
function brokenElves(
  v2: Buffer,
  dir: string,
): Array<{ name: string; bytes?: Buffer; path?: string; codes: string[]; exit: number }> {
  const obj = parseElf(v2);
  const phoff = Number(obj.header.phoff);
  const loadIndex = obj.programHeaders.findIndex((p) => p.type === 1);
  const loadPh = phoff + loadIndex * 56;
  const dyn = obj.programHeaders.find((p) => p.type === 2)!;
  /** A copy whose dynamic entry `tag` holds `value`. */
  const dynEntry = (tag: number, value: number) => {
    const b = Buffer.from(v2);
    for (let at = Number(dyn.offset); at + 16 <= Number(dyn.offset + dyn.filesz); at += 16) {
      if (b.readBigInt64LE(at) === BigInt(tag)) b.writeBigUInt64LE(BigInt(value), at + 8);
    }
    return b;
  };
  const TRUNC = ['ELF_TRUNCATED', 'ELF_MALFORMED'];
  const list: Array<{ name: string; bytes?: Buffer; path?: string; codes: string[]; exit: number }> = [
    { name: 'empty file', bytes: Buffer.alloc(0), codes: ['ELF_NOT_ELF', 'ELF_TRUNCATED'], exit: 3 },
    {
      name: 'a shell script',
      bytes: Buffer.from('#!/bin/sh\necho not a library\n'),
      codes: ['ELF_NOT_ELF'],
      exit: 3,
    },
    { name: 'ELF magic only (16 bytes)', bytes: v2.subarray(0, 16), codes: TRUNC, exit: 3 },
    { name: 'truncated after the ELF header (64 bytes)', bytes: v2.subarray(0, 64), codes: TRUNC, exit: 3 },
    { name: 'truncated at 1000 bytes', bytes: v2.subarray(0, 1000), codes: TRUNC, exit: 3 },
    { name: 'truncated at half', bytes: v2.subarray(0, v2.length >> 1), codes: TRUNC, exit: 3 },
    { name: 'last byte missing', bytes: v2.subarray(0, v2.length - 1), codes: TRUNC, exit: 3 },
    {
      name: '32-bit class (EI_CLASS=1)',
      bytes: patched(v2, 4, 1, 1),
      codes: ['ELF_UNSUPPORTED_CLASS'],
      exit: 3,
    },
    {
      name: 'big-endian (EI_DATA=2)',
      bytes: patched(v2, 5, 2, 1),
      codes: ['ELF_UNSUPPORTED_ENDIAN'],
      exit: 3,
    },
    {
      name: 'AArch64 machine (e_machine=183)',
      bytes: patched(v2, 18, 183, 2),
      codes: ['ELF_UNSUPPORTED_MACHINE'],
      exit: 3,
    },
    {
      name: 'an executable (e_type=ET_EXEC)',
      bytes: patched(v2, 16, 2, 2),
      codes: ['ELF_NOT_SHARED_OBJECT'],
      exit: 3,
    },
    {
      name: 'a relocatable object (e_type=ET_REL)',
      bytes: patched(v2, 16, 1, 2),
      codes: ['ELF_NOT_SHARED_OBJECT', 'ELF_MALFORMED'],
      exit: 3,
    },
    {
      name: 'program headers beyond the end (e_phoff)',
      bytes: patched(v2, 32, 0x7fffff00, 8),
      codes: TRUNC,
      exit: 3,
    },
    // 0xffff is PN_XNUM: the count is then in section 0's sh_info (0 here), so the object has no segments.
    {
      name: '65535 program headers (e_phnum = PN_XNUM)',
      bytes: patched(v2, 56, 0xffff, 2),
      codes: [...TRUNC, 'PACK_NO_SONAME', 'PACK_NO_BUILD_ID'],
      exit: 3,
    },
    {
      name: 'wrong program header size (e_phentsize=17)',
      bytes: patched(v2, 54, 17, 2),
      codes: ['ELF_MALFORMED', 'ELF_TRUNCATED'],
      exit: 3,
    },
    {
      name: 'section headers beyond the end (e_shoff)',
      bytes: patched(v2, 40, 0x7fffff00, 8),
      codes: TRUNC,
      exit: 3,
    },
    {
      name: 'section name table index out of range (e_shstrndx)',
      bytes: patched(v2, 62, 0xfff0, 2),
      codes: TRUNC,
      exit: 3,
    },
    {
      name: 'a PT_LOAD that extends beyond the end of the file',
      bytes: patched(v2, loadPh + 32, Number(obj.programHeaders[loadIndex]!.filesz) + 0x100000, 8),
      codes: TRUNC,
      exit: 3,
    },
    {
      name: 'DT_STRTAB pointing outside every segment',
      bytes: dynEntry(5, 0x7fff0000),
      codes: TRUNC,
      exit: 3,
    },
    {
      name: 'DT_SYMTAB pointing outside every segment',
      bytes: dynEntry(6, 0x7fff0000),
      codes: TRUNC,
      exit: 3,
    },
  ];
  const dirPath = join(dir, 'a-directory.so');
  mkdirSync(dirPath, { recursive: true });
  list.push({ name: 'a directory', path: dirPath, codes: ['PACK_INPUT_UNREADABLE'], exit: 5 });
  list.push({
    name: 'a missing file',
    path: join(dir, 'missing.so'),
    codes: ['PACK_INPUT_UNREADABLE'],
    exit: 5,
  });
  return list;
}

export interface CorpusOptions {
  /** Random single-bit flips of the bundle file, and random byte mutations of the ELF header area. */
  flips: number;
  elfFuzz: number;
  seed: number;
  /** A gzip bomb (1.1 GiB of zeros behind 1 MB) and a 1.1 GiB sparse file: slower, more memory. */
  heavy: boolean;
}

/** Writes every corpus file into `dir` and returns the entries. */
export function buildCorpus(rel: Reliable, dir: string, opts: CorpusOptions): CorpusEntry[] {
  mkdirSync(dir, { recursive: true });
  const good = readFileSync(rel.fix12);
  const base = decodeBundle(good);
  const m = base.manifest;
  const { oldBuild, newBuild } = base;
  const entries: CorpusEntry[] = [];
  let n = 0;
  const file = (name: string, bytes: Buffer) => {
    const p = join(
      dir,
      `${String(n++).padStart(3, '0')}-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 50)}.ulp`,
    );
    writeFileSync(p, bytes);
    return p;
  };
  const trig = (
    group: string,
    name: string,
    bytes: Buffer | string,
    codes: string[],
    exit = 3,
    extra: string[] = [],
    timeoutMs?: number,
  ) => {
    const p = typeof bytes === 'string' ? bytes : file(name, bytes);
    entries.push({
      name,
      group,
      tool: 'ulp-trigger',
      args: ['{pid}', p, '--json', ...extra],
      codes,
      exit,
      ...(timeoutMs ? { timeoutMs } : {}),
    });
    // The bundle reader of ulp-pack --inspect must say the same for what is wrong with the file itself.
    if (codes[0]!.startsWith('BUNDLE_') && extra.length === 0 && group !== 'elf in bundle')
      entries.push({
        name,
        group,
        tool: 'ulp-pack',
        args: ['--inspect', p, '--json'],
        codes,
        exit,
        ...(timeoutMs ? { timeoutMs } : {}),
      });
  };

  // --- the file itself
  trig('file', 'empty file', Buffer.alloc(0), ['BUNDLE_NOT_GZIP']);
  trig(
    'file',
    'not gzip (a zip header)',
    Buffer.from('PK\x03\x04 this is a zip, not a bundle, padded to be long enough'),
    ['BUNDLE_NOT_GZIP'],
  );
  trig('file', 'a directory', dir, ['BUNDLE_READ_FAILED'], 5);
  trig('file', 'a missing file', join(dir, 'no-such.ulp'), ['BUNDLE_READ_FAILED'], 5);
  trig('file', 'a character device (/dev/zero)', '/dev/zero', ['BUNDLE_READ_FAILED'], 5);
  // Hangs today (open(2) of a FIFO without a writer blocks before the regular-file check): soak only, where a hang is reported.
  if (opts.heavy)
    trig('file', 'a FIFO nobody writes to', fifoBundle(dir), ['BUNDLE_READ_FAILED'], 5, [], 10_000);
  for (const frac of [0.1, 0.5, 0.9])
    trig('truncated', `truncated to ${frac * 100}%`, good.subarray(0, Math.floor(good.length * frac)), [
      'BUNDLE_CORRUPT',
      'BUNDLE_MISSING_ENTRY',
    ]);
  trig('truncated', 'last byte missing', good.subarray(0, good.length - 1), ['BUNDLE_CORRUPT']);
  trig('truncated', 'trailing garbage after the gzip stream', Buffer.concat([good, Buffer.from('garbage')]), [
    'BUNDLE_CORRUPT',
  ]);

  // --- random single-bit flips: those that still decode (a gzip header's mtime/OS byte) are harmless and skipped
  const rnd = seededRandom(opts.seed);
  let harmless = 0;
  for (let i = 0; i < opts.flips; i++) {
    const b = Buffer.from(good);
    const at = Math.floor(rnd() * b.length);
    const bit = 1 << Math.floor(rnd() * 8);
    b[at]! ^= bit;
    try {
      decodeBundle(b);
      harmless++;
      continue;
    } catch {
      /* refused in-process: the command must refuse it too */
    }
    trig('bit flip', `bit ${Math.log2(bit)} of byte ${at} flipped`, b, [
      'BUNDLE_CORRUPT',
      'BUNDLE_NOT_GZIP',
      'BUNDLE_HASH_MISMATCH',
      'BUNDLE_MANIFEST_INVALID',
      'BUNDLE_MISSING_ENTRY',
      'BUNDLE_UNEXPECTED_ENTRY',
      'BUNDLE_UNSAFE_PATH',
      'BUNDLE_NOT_REGULAR_FILE',
      'BUNDLE_LINK_ENTRY',
      'BUNDLE_ENTRY_TOO_LARGE',
      'BUNDLE_TOO_LARGE',
      'BUNDLE_SIZE_MISMATCH',
      'BUNDLE_DUPLICATE_ENTRY',
    ]);
  }
  if (harmless)
    entries.push({
      name: `${harmless} flips that still decode to the same bundle (gzip header mtime/OS bytes): not run`,
      group: 'bit flip',
      tool: 'ulp-trigger',
      args: [],
      codes: [],
      exit: -1,
    });

  // --- tar structure
  const withExtra = (extra: RawEntry[]) => tarBundle([...entriesOf(m, oldBuild, newBuild), ...extra]);
  trig('paths', 'absolute path /etc/passwd', withExtra([{ name: '/etc/passwd', data: 'x' }]), [
    'BUNDLE_UNSAFE_PATH',
  ]);
  trig('paths', 'traversal ../../.bashrc', withExtra([{ name: '../../.bashrc', data: 'x' }]), [
    'BUNDLE_UNSAFE_PATH',
  ]);
  trig(
    'paths',
    'traversal hidden in the middle x/../ulp.json',
    withExtra([{ name: 'x/../ulp.json', data: 'x' }]),
    ['BUNDLE_UNSAFE_PATH'],
  );
  trig(
    'links',
    'symbolic link signature -> /etc/shadow',
    withExtra([{ name: 'signature', type: 'SymbolicLink', linkpath: '/etc/shadow' }]),
    ['BUNDLE_LINK_ENTRY'],
  );
  trig(
    'links',
    'hard link signature -> ulp.json',
    withExtra([{ name: 'signature', type: 'Link', linkpath: 'ulp.json' }]),
    ['BUNDLE_LINK_ENTRY'],
  );
  trig('entries', 'a directory entry', withExtra([{ name: 'signature', type: 'Directory' }]), [
    'BUNDLE_NOT_REGULAR_FILE',
  ]);
  trig('entries', 'a FIFO entry', withExtra([{ name: 'signature', type: 'FIFO' }]), [
    'BUNDLE_NOT_REGULAR_FILE',
  ]);
  trig('entries', 'a character device entry', withExtra([{ name: 'signature', type: 'CharacterDevice' }]), [
    'BUNDLE_NOT_REGULAR_FILE',
  ]);
  trig(
    'entries',
    'a pax header renaming the next entry',
    tarBundle([
      { name: 'PaxHeader', type: 'ExtendedHeader', data: '30 path=../../etc/cron.d/x\n' },
      ...entriesOf(m, oldBuild, newBuild),
    ]),
    ['BUNDLE_NOT_REGULAR_FILE'],
  );
  trig('entries', 'an unexpected entry install.sh', withExtra([{ name: 'install.sh', data: 'rm -rf /' }]), [
    'BUNDLE_UNEXPECTED_ENTRY',
  ]);
  trig('entries', 'old.so twice', withExtra([{ name: 'old.so', data: oldBuild }]), [
    'BUNDLE_DUPLICATE_ENTRY',
  ]);
  trig(
    'entries',
    'old.so missing',
    tarBundle(entriesOf(m, oldBuild, newBuild).filter((e) => e.name !== 'old.so')),
    ['BUNDLE_MISSING_ENTRY'],
  );
  trig(
    'entries',
    'ulp.json missing',
    tarBundle(entriesOf(m, oldBuild, newBuild).filter((e) => e.name !== 'ulp.json')),
    ['BUNDLE_MISSING_ENTRY'],
  );
  trig('entries', 'no end-of-archive marker', tarBundle(entriesOf(m, oldBuild, newBuild), { end: false }), [
    'BUNDLE_CORRUPT',
  ]);
  {
    // A header that claims a 600 MiB new.so (the data is not there: the size is checked first).
    const tar = rawTar(entriesOf(m, oldBuild, newBuild));
    const off = 512 + Math.ceil(serializeManifest(m).length / 512) * 512; // new.so's header
    const hdr = tar.subarray(off, off + 512);
    hdr.write((600 * 1024 * 1024).toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    let sum = 0;
    hdr.fill(' ', 148, 156);
    for (const byte of hdr) sum += byte;
    hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    trig('size', 'new.so entry claims 600 MiB', gzipSync(tar), ['BUNDLE_ENTRY_TOO_LARGE']);
  }
  if (opts.heavy) {
    trig(
      'size',
      'gzip bomb: 1 MB unpacking to 1.2 GiB',
      gzipSync(Buffer.alloc(1200 * 1024 * 1024), { level: 9 }),
      ['BUNDLE_TOO_LARGE'],
    );
    const sparse = join(dir, 'sparse-1.1GiB.ulp');
    const fd = openSync(sparse, 'w');
    writeFileSync(fd, good);
    ftruncateSync(fd, 1100 * 1024 * 1024 + 1);
    closeSync(fd);
    trig('size', 'a 1.1 GiB file (sparse)', sparse, ['BUNDLE_TOO_LARGE']);
  }

  // --- the manifest
  trig(
    'manifest',
    'ulp.json is not JSON',
    tarBundle(entriesOf(Buffer.from('{not json'), oldBuild, newBuild)),
    ['BUNDLE_MANIFEST_INVALID'],
  );
  trig(
    'manifest',
    'schema: soname missing',
    tarBundle(entriesOf(Buffer.from(JSON.stringify({ ...m, soname: undefined })), oldBuild, newBuild)),
    ['BUNDLE_MANIFEST_INVALID'],
  );
  trig(
    'manifest',
    'schema: size is a string',
    tarBundle(
      entriesOf(
        Buffer.from(
          JSON.stringify(edited(m, (x) => ((x.builds.new as { size: unknown }).size = '4096'), true)),
        ),
        oldBuild,
        newBuild,
      ),
    ),
    ['BUNDLE_MANIFEST_INVALID'],
  );
  trig(
    'manifest',
    'schema: negative size',
    tarBundle(
      entriesOf(
        Buffer.from(JSON.stringify(edited(m, (x) => (x.builds.new.size = -1), true))),
        oldBuild,
        newBuild,
      ),
    ),
    ['BUNDLE_MANIFEST_INVALID'],
  );
  trig(
    'manifest',
    'schema: build-id not hex',
    tarBundle(
      entriesOf(
        Buffer.from(JSON.stringify(edited(m, (x) => (x.builds.new.buildId = 'zz'), true))),
        oldBuild,
        newBuild,
      ),
    ),
    ['BUNDLE_MANIFEST_INVALID'],
  );
  trig(
    'manifest',
    'format 2.0.0 (another major version)',
    tarBundle(entriesOf(Buffer.from(JSON.stringify({ ...m, format: '2.0.0' })), oldBuild, newBuild)),
    ['BUNDLE_FORMAT_UNSUPPORTED'],
  );
  trig(
    'manifest',
    'patch id that does not match the builds',
    tarBundle(
      entriesOf(
        edited(m, (x) => (x.patchId = '0'.repeat(32)), true),
        oldBuild,
        newBuild,
      ),
    ),
    ['BUNDLE_PATCH_ID_MISMATCH'],
  );
  trig(
    'manifest',
    'the report calls the update incompatible',
    encodeBundle({
      manifest: edited(
        m,
        (x) => ((x.forward.verdict = 'incompatible'), (x.forward.report.verdict = 'incompatible')),
      ),
      oldBuild,
      newBuild,
    }),
    ['BUNDLE_INCOMPATIBLE'],
  );

  // --- hashes, sizes, build-ids
  {
    const evil = Buffer.from(newBuild);
    evil[evil.length - 100]! ^= 0xff;
    trig('hashes', 'new.so changed, manifest not (hash mismatch)', tarBundle(entriesOf(m, oldBuild, evil)), [
      'BUNDLE_HASH_MISMATCH',
    ]);
    trig(
      'hashes',
      'old.so one byte longer (size mismatch)',
      tarBundle(entriesOf(m, Buffer.concat([oldBuild, Buffer.from([0])]), newBuild)),
      ['BUNDLE_SIZE_MISMATCH'],
    );
    trig(
      'build-ids',
      'manifest names another build-id for new.so (patch id recomputed)',
      tarBundle(
        entriesOf(
          edited(m, (x) => (x.builds.new.buildId = 'ab'.repeat(20))),
          oldBuild,
          newBuild,
        ),
      ),
      ['BUNDLE_BUILD_ID_MISMATCH'],
    );
    trig('build-ids', 'old and new swapped in the tar', tarBundle(entriesOf(m, newBuild, oldBuild)), [
      'BUNDLE_SIZE_MISMATCH',
      'BUNDLE_HASH_MISMATCH',
    ]);
  }

  // --- signatures and keys
  {
    const a = generateKeyPairSync('ed25519');
    const b = generateKeyPairSync('ed25519');
    const pubA = join(dir, 'a.pub.pem');
    const pubB = join(dir, 'b.pub.pem');
    writeFileSync(pubA, a.publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(pubB, b.publicKey.export({ type: 'spki', format: 'pem' }));
    const signed = file(
      'signed by A',
      encodeBundle({ manifest: m, oldBuild, newBuild }, { privateKey: a.privateKey }),
    );
    trig('signature', 'signed by A, --key B', signed, ['BUNDLE_SIGNATURE_KEY_MISMATCH'], 3, ['--key', pubB]);
    trig('signature', 'signed, no key given', signed, ['TRIGGER_SIGNATURE_UNVERIFIED'], 3);
    trig('signature', 'unsigned, --key A', rel.fix12, ['BUNDLE_UNSIGNED'], 3, ['--key', pubA]);
    const sigEntry = rawTarEntries(gunzip(readFileSync(signed))).find((e) => e.name === 'signature')!;
    const m2 = edited(m, (x) => (x.createdAt = '2001-01-01T00:00:00Z'));
    trig(
      'signature',
      'manifest edited after signing (signature kept)',
      tarBundle([...entriesOf(m2, oldBuild, newBuild), { name: 'signature', data: sigEntry.data }]),
      ['BUNDLE_SIGNATURE_INVALID'],
      3,
      ['--key', pubA],
    );
    trig(
      'signature',
      'signature entry is garbage',
      tarBundle([...entriesOf(m, oldBuild, newBuild), { name: 'signature', data: 'not a signature' }]),
      ['BUNDLE_SIGNATURE_MALFORMED'],
    );
    const rsa = join(dir, 'rsa.pub.pem');
    writeFileSync(
      rsa,
      generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }),
    );
    trig('keys', '--key is an RSA key', rel.fix12, ['BUNDLE_KEY_INVALID'], 3, ['--key', rsa]);
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a key');
    trig('keys', '--key is not a key', rel.fix12, ['BUNDLE_KEY_INVALID'], 3, ['--key', junk]);
    trig('keys', '--key does not exist', rel.fix12, ['TRIGGER_KEY_UNREADABLE'], 5, [
      '--key',
      join(dir, 'nope.pem'),
    ]);
  }

  // --- broken ELF files as builds of otherwise consistent bundles
  for (const e of brokenElves(newBuild, dir)) {
    if (!e.bytes || e.bytes.length === 0) continue;
    // The reader parses headers; what it does not look at (section headers, dynamic entries) the trigger refuses later, with an ELF_ code.
    trig('elf in bundle', `new.so: ${e.name}`, consistent(m, oldBuild, e.bytes), [
      'BUNDLE_BUILD_INVALID',
      ...e.codes.filter((c) => c.startsWith('ELF_')),
      'TRIGGER_LAYOUT_MISMATCH',
      'TRIGGER_BUILD_MISMATCH',
    ]);
  }
  trig('elf in bundle', 'old.so: a shell script', consistent(m, Buffer.from('#!/bin/sh\n'), newBuild), [
    'BUNDLE_BUILD_INVALID',
  ]);

  // --- consistent bundles that are wrong for this process
  {
    const v3 = readFileSync(rel.lib(3));
    trig(
      'process',
      'a bundle for builds this process does not run (v2 -> v3)',
      readFileSync(rel.fix23),
      ['TRIGGER_WRONG_BUILD'],
      2,
    );
    trig(
      'process',
      'a bundle for a library the process has not loaded',
      consistent(
        m,
        oldBuild,
        v3,
        (x) => ((x.soname = 'libnotloaded.so.7'), (x.builds.new.buildId = parseElf(v3).buildId!)),
      ),
      ['TRIGGER_NOT_LOADED'],
      2,
    );
    trig(
      'process',
      'a bundle that targets glibc',
      consistent(m, oldBuild, newBuild, (x) => (x.soname = 'libc.so.6')),
      ['TRIGGER_GLIBC'],
      2,
    );
    const layout = variant(rel, 'layout', 'long ulp_extra_global[2048] = {1};');
    trig(
      'process',
      'new build with another data layout, report forged',
      consistent(m, oldBuild, layout, (x) => (x.builds.new.buildId = parseElf(layout).buildId!)),
      ['TRIGGER_LAYOUT_MISMATCH'],
      2,
    );
    // A data import (GLOB_DAT): resolved when the build is staged, as ld.so does even under lazy binding.
    const unresolved = variant(
      rel,
      'unresolved',
      'extern long ulp_no_such_variable; long demo_uses_missing(void) { return ulp_no_such_variable; }',
    );
    trig(
      'process',
      'new build imports a symbol nobody defines, report forged',
      consistent(m, oldBuild, unresolved, (x) => (x.builds.new.buildId = parseElf(unresolved).buildId!)),
      ['LOADER_UNRESOLVED_SYMBOL'],
      2,
    );
  }

  // --- broken ELF files given to ulp-pack
  const out = join(dir, 'never-written.ulp');
  for (const e of brokenElves(newBuild, dir)) {
    const p = e.path ?? join(dir, `elf-${String(n++).padStart(3, '0')}.so`);
    if (e.bytes) writeFileSync(p, e.bytes);
    entries.push({
      name: `NEW: ${e.name}`,
      group: 'elf',
      tool: 'ulp-pack',
      args: [rel.lib(1), p, '-o', out, '--json'],
      codes: e.path ? e.codes : [...e.codes],
      exit: e.exit,
      output: out,
    });
  }
  if (opts.heavy)
    entries.push({
      name: 'NEW: a FIFO nobody writes to',
      group: 'elf',
      tool: 'ulp-pack',
      args: [rel.lib(1), fifoBundle(dir), '-o', out, '--json'],
      codes: ['PACK_INPUT_UNREADABLE'],
      exit: 5,
      output: out,
      timeoutMs: 10_000,
    });
  entries.push({
    name: 'OLD: a PIE executable, not a library',
    group: 'elf',
    tool: 'ulp-pack',
    args: [rel.exe, rel.lib(2), '-o', out, '--json'],
    codes: ['ELF_NOT_SHARED_OBJECT', 'PACK_NO_SONAME', 'PACK_SONAME_MISMATCH'],
    exit: 3,
    output: out,
  });
  // Random mutations of the headers (first 4 KiB): whatever the reader makes of them, never an internal error.
  const frnd = seededRandom(opts.seed ^ 0x5eed);
  for (let i = 0; i < opts.elfFuzz; i++) {
    const b = Buffer.from(newBuild);
    const count = 1 + Math.floor(frnd() * 4);
    for (let k = 0; k < count; k++)
      b[Math.floor(frnd() * Math.min(4096, b.length))] = Math.floor(frnd() * 256);
    const p = join(dir, `fuzz-${i}.so`);
    writeFileSync(p, b);
    entries.push({
      name: `NEW: ${count} random bytes in the first 4 KiB (fuzz ${i})`,
      group: 'elf fuzz',
      tool: 'ulp-pack',
      args: [rel.lib(1), p, '-o', out, '--json'],
      codes: ['*'],
      exit: -2,
      output: out,
    });
  }
  return entries;
}

/** libdemo v2 with extra code or data (a build the packer would refuse, smuggled in a forged bundle). */
function variant(rel: Reliable, name: string, extra: string): Buffer {
  const code =
    readFileSync(new URL('../../test/fixtures/trigger/libdemo.c', import.meta.url), 'utf8') +
    '\n' +
    extra +
    '\n';
  return readFileSync(
    compile({
      sources: [{ name: `reliability/libdemo-${name}.c`, code }],
      out: `libdemo-${name}.so`,
      flags: [
        '-shared',
        '-fPIC',
        '-O2',
        '-DDEMO_VERSION=2',
        '-Wl,-soname,libdemo.so.1',
        ...(rel.relro === 'full' ? ['-Wl,-z,relro,-z,now'] : ['-Wl,-z,relro,-z,lazy']),
      ],
    }),
  );
}

function gunzip(b: Buffer): Buffer {
  return gunzipSync(b);
}

function rawTarEntries(tar: Buffer): Array<{ name: string; data: Buffer }> {
  const out: Array<{ name: string; data: Buffer }> = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const name = tar
      .subarray(off, off + 100)
      .toString('latin1')
      .replace(/\0.*$/s, '');
    if (!name) break;
    const size = parseInt(tar.subarray(off + 124, off + 136).toString('latin1'), 8);
    out.push({ name, data: tar.subarray(off + 512, off + 512 + size) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/**
 * The first case of every group: the short form for CI. Every kind of
 * damage is still seen (by ulp-trigger, or by ulp-pack for its own groups);
 * the soak runs them all, through both commands.
 */
export function shortCorpus(entries: readonly CorpusEntry[], also: readonly string[] = []): CorpusEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    if (e.exit === -1) return false;
    if (also.includes(e.name) && e.tool === 'ulp-trigger') return true;
    if (seen.has(e.group)) return false;
    seen.add(e.group);
    return true;
  });
}

/**
 * Runs every entry through the command against a live target. After every
 * ulp-trigger entry its mappings and GOT words are compared with their state
 * before it; a change is reported and the target replaced by a fresh one, so
 * that the next entries are judged on an untouched process. At the end the
 * target must still be healthy (its own checks: lib.ts).
 */
export async function runCorpus(
  runner: Runner,
  rel: Reliable,
  entries: readonly CorpusEntry[],
  onEntry?: (r: CorpusResult) => void,
): Promise<{ results: CorpusResult[]; targets: number; health: string[] }> {
  const results: CorpusResult[] = [];
  let target: Target | undefined;
  let targets = 0;
  let reference: ReturnType<typeof processState> | undefined;
  const fresh = async (): Promise<Target> => {
    target?.dispose();
    target = rel.start(1, ['20']);
    targets++;
    await target.waitFor((o) => parseRounds(o).length >= 2);
    reference = processState(target.pid);
    return target;
  };
  try {
    let t = await fresh();
    for (const e of entries) {
      if (e.exit === -1) {
        results.push({
          name: e.name,
          group: e.group,
          tool: e.tool,
          exit: null,
          code: undefined,
          ms: 0,
          ok: true,
          problems: [],
          note: true,
        });
        continue;
      }
      const args = e.args.map((a) => (a === '{pid}' ? String(t.pid) : a));
      if (e.output) rmSync(e.output, { force: true });
      const timeoutMs = e.timeoutMs ?? 60_000;
      const r = runner.run(e.tool, args, { timeoutMs });
      const code = r.json?.error?.code as string | undefined;
      const problems: string[] = [];
      if (r.signal)
        problems.push(
          `ended by ${r.signal}${r.ms >= timeoutMs - 1000 ? ` (no answer after ${timeoutMs / 1000} s: a hang)` : ''}`,
        );
      else if (e.exit === -2) {
        // fuzz: any verdict, any ELF_/PACK_ refusal, but never an internal error
        if (r.code === 1 || code === 'INTERNAL_ERROR' || code === 'ELF_INTERNAL')
          problems.push(`internal error: ${r.json?.error?.message ?? r.stderr.slice(0, 400)}`);
        else if (![0, 2, 3].includes(r.code ?? -1))
          problems.push(`exit ${r.code}: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 200)}`);
      } else {
        if (!code || !e.codes.includes(code))
          problems.push(
            `code ${code ?? '(none)'}, expected ${e.codes.join(' or ')}: ${r.json?.error?.message ?? r.stderr.slice(0, 300)}`,
          );
        else if (!r.json.error.hint || !r.json.error.message) problems.push('no message or hint');
        const want = code ? documentedExit(e.tool, code) : e.exit;
        if (r.code !== want)
          problems.push(`exit ${r.code}, docs/CLI.md gives ${want}${code ? ` for ${code}` : ''}`);
      }
      if (e.output && existsSync(e.output)) {
        if (e.exit !== -2 || r.code !== 0) problems.push('ulp-pack wrote the output');
        rmSync(e.output, { force: true });
      }
      if (e.tool === 'ulp-trigger') {
        let changed = false;
        if (!t.alive()) {
          problems.push('the target died');
          changed = true;
        } else {
          const after = processState(t.pid);
          if (after.maps !== reference!.maps) {
            const added = ulpMappings(t.pid).filter((l) => !reference!.maps.includes(l));
            problems.push(
              `the target's mappings changed${added.length ? `: new ${[...new Set(added.map((l) => l.split(/\s+/).slice(5).join(' ')))].join(', ')}` : ''}`,
            );
            changed = true;
          }
          const slots = [...after.slots].filter(([k, v]) => reference!.slots.get(k) !== v).map(([k]) => k);
          if (slots.length) {
            problems.push(`GOT words changed: ${slots.slice(0, 3).join(', ')}`);
            changed = true;
          }
          problems.push(...leftovers(t.pid));
          if (r.code === 0 && r.json?.outcome === 'applied') problems.push('APPLIED');
        }
        if (changed || problems.includes('APPLIED')) t = await fresh();
      }
      const res = {
        name: e.name,
        group: e.group,
        tool: e.tool,
        exit: r.code,
        code,
        ms: r.ms,
        ok: problems.length === 0,
        problems,
      };
      results.push(res);
      onEntry?.(res);
    }
    const h = await health(t, t.output().length);
    return { results, targets, health: h.problems };
  } finally {
    target?.dispose();
  }
}

/** A FIFO nobody writes to, given as the bundle: the command must not hang. */
export function fifoBundle(dir: string): string {
  const p = join(dir, 'fifo.ulp');
  if (!existsSync(p)) execFileSync('mkfifo', [p]);
  return p;
}
