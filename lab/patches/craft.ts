/**
 * Test-side bundle construction: valid bundles from two tiny gcc builds, and
 * hand-made gzip'ed tars with whatever entries, types and names a test needs
 * (the reader must refuse them), built with the tar package's Header class.
 */
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { compile } from '../compile.js';
import { readFileSync } from 'node:fs';
import { createManifest, type Manifest, type Report } from '../../patches/index.js';
import { parseElf } from '../../elf/index.js';

export interface RawEntry {
  name: string;
  data?: Buffer | string;
  /** tar type name: 'File', 'SymbolicLink', 'Link', 'Directory', 'CharacterDevice', 'FIFO', 'ExtendedHeader'... */
  type?: string;
  linkpath?: string;
  /** Corrupts the header checksum. */
  badChecksum?: boolean;
}

export function rawTar(entries: RawEntry[], { end = true }: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data ?? '');
    const h = new Header({
      path: e.name,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: data.length,
      mtime: new Date(0),
      type: (e.type ?? 'File') as never,
      linkpath: e.linkpath,
    });
    h.encode();
    const block = h.block!;
    if (e.badChecksum) block[148] = block[148] === 0x31 ? 0x32 : 0x31;
    parts.push(block, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const gz = (b: Buffer) => gzipSync(b);

const lib = (version: number) =>
  compile({
    sources: [
      {
        name: `patches-demo-v${version}.c`,
        code: `int counter;\nint demo_get(void) { return ${version} + counter++; }\n`,
      },
    ],
    out: 'libpdemo.so.1',
    flags: ['-shared', '-fPIC', '-O1', '-Wl,-soname,libpdemo.so.1', '-Wl,--build-id'],
  });

export function demoBuilds(): { oldBuild: Buffer; newBuild: Buffer; oldBuildId: string; newBuildId: string } {
  const oldBuild = readFileSync(lib(1));
  const newBuild = readFileSync(lib(2));
  return {
    oldBuild,
    newBuild,
    oldBuildId: parseElf(oldBuild).buildId!,
    newBuildId: parseElf(newBuild).buildId!,
  };
}

const category = (verdict: 'unchanged' | 'compatible') => ({ verdict, summary: verdict, findings: [] });

/** A minimal, schema-valid report (the patches layer does not judge its content). */
export function sampleReport(sha: { from: string; to: string }): Report {
  const b = (sha256: string) => ({ sha256, size: 1, relro: 'full' as const, stripped: false });
  return {
    verdict: 'compatible',
    from: b(sha.from),
    to: b(sha.to),
    categories: {
      meta: category('unchanged'),
      api: category('unchanged'),
      code: category('compatible'),
      init: category('unchanged'),
      ro: category('unchanged'),
      relro: category('unchanged'),
      data: category('unchanged'),
      tls: category('unchanged'),
      funcptrs: category('unchanged'),
    },
    functions: {
      named: true,
      changed: ['demo_get'],
      added: [],
      removed: [],
      unchanged: 0,
      from: { count: 1, bytes: 10 },
      to: { count: 1, bytes: 10 },
    },
    exports: { added: [], removed: [] },
    imports: { added: [], removed: [] },
    needed: { added: [], removed: [] },
    writable: { start: '0x4000', end: '0x5000', sites: [] },
  };
}

export function sampleManifest(createdAt = new Date('2025-01-02T03:04:05Z')): {
  manifest: Manifest;
  oldBuild: Buffer;
  newBuild: Buffer;
} {
  const b = demoBuilds();
  const manifest = createManifest({
    soname: 'libpdemo.so.1',
    ...b,
    createdAt,
    tool: { name: 'ulp-pack', version: 'test' },
    forward: sampleReport({ from: 'a'.repeat(64), to: 'b'.repeat(64) }),
    reverse: sampleReport({ from: 'b'.repeat(64), to: 'a'.repeat(64) }),
  });
  return { manifest, oldBuild: b.oldBuild, newBuild: b.newBuild };
}
