/**
 * The TLS rule of the packer (packer/analyze/tls.ts) on hand-built builds:
 * running threads keep the old build's TLS block, so its size, alignment,
 * initial image and every variable's offset must stay; what may change is
 * reported without refusing.
 */
import assert from 'node:assert/strict';
import { RelocType } from '../../../../elf/types.js';
import { STT_TLS } from '../../../../elf/constants.js';
import { analyzeTls } from '../../../../packer/analyze/tls.js';
import { createBuild } from '../../../../packer/model.js';
import { syntheticElf, type ElfSpec, type SymSpec } from '../../../../lab/process-model.js';

const TDATA = 0x4e00n;

interface TlsShape {
  image?: Buffer;
  memsz?: bigint;
  align?: bigint;
  vars?: SymSpec[];
  /** Relocated words inside .tdata (a pointer initialiser), by offset. */
  relocated?: bigint[];
  staticTls?: boolean;
}

function build(label: string, shape: TlsShape | undefined) {
  const spec: ElfSpec = {
    soname: 'libt.so.1',
    text: { vaddr: 0n, size: 0x3000n },
    data: { vaddr: 0x4000n, size: 0x2000n },
  };
  if (shape) {
    const image = shape.image ?? Buffer.alloc(16, 7);
    spec.tls = {
      vaddr: TDATA,
      filesz: BigInt(image.length),
      memsz: shape.memsz ?? 64n,
      align: shape.align ?? 8n,
    };
    spec.images = [{ vaddr: TDATA, bytes: image }];
    spec.symbols = (shape.vars ?? [{ name: 'counter', value: 0n }]).map((v) => ({ type: STT_TLS, ...v }));
    spec.relocs = (shape.relocated ?? []).map((o) => ({
      offset: TDATA + o,
      type: RelocType.RELATIVE,
      addend: 0x1000n,
    }));
    spec.staticTls = shape.staticTls ?? false;
  }
  return createBuild(label, `/${label}/libt.so.1`, Buffer.alloc(0), syntheticElf(spec));
}

const tls = (from: TlsShape | undefined, to: TlsShape | undefined) =>
  analyzeTls({ from: build('old', from), to: build('new', to) });
const codes = (c: ReturnType<typeof tls>) => c.findings.map((f) => `${f.severity}:${f.code}`);

describe('packer: the TLS block running threads keep', () => {
  it('nothing to say when neither build has TLS, or both have the same block', () => {
    assert.deepEqual(tls(undefined, undefined), { verdict: 'unchanged', summary: 'no TLS', findings: [] });
    const same = tls({}, {});
    assert.equal(same.verdict, 'unchanged');
    assert.equal(same.summary, '64 bytes per thread');
  });

  it('refuses adding or removing the TLS module', () => {
    assert.deepEqual(codes(tls(undefined, {})), ['error:TLS_ADDED']);
    assert.deepEqual(codes(tls({}, undefined)), ['error:TLS_REMOVED']);
    assert.equal(tls({}, undefined).verdict, 'incompatible');
  });

  it('refuses a block of another size or alignment, with both layouts in the details', () => {
    const grown = tls({}, { memsz: 72n });
    assert.deepEqual(codes(grown), ['error:TLS_LAYOUT_CHANGED']);
    assert.deepEqual(grown.findings[0]!.details, {
      from: { memsz: 64, filesz: 16, align: 8 },
      to: { memsz: 72, filesz: 16, align: 8 },
    });
    assert.deepEqual(codes(tls({}, { align: 16n })), ['error:TLS_LAYOUT_CHANGED']);
  });

  it('refuses new initial values, but not a relocated word (ld.so writes those per thread)', () => {
    const changed = Buffer.alloc(16, 7);
    changed[3] = 9;
    assert.deepEqual(codes(tls({}, { image: changed })), ['error:TLS_IMAGE_CHANGED']);
    const pointer = Buffer.alloc(16, 7);
    pointer.fill(0x42, 8, 16);
    assert.deepEqual(codes(tls({ relocated: [8n] }, { image: pointer, relocated: [8n] })), []);
  });

  it('refuses a variable that moves; a new variable in unused bytes is only reported', () => {
    assert.deepEqual(
      codes(
        tls(
          {
            vars: [
              { name: 'a', value: 0n },
              { name: 'b', value: 8n },
            ],
          },
          {
            vars: [
              { name: 'a', value: 8n },
              { name: 'b', value: 0n },
            ],
          },
        ),
      ),
      ['error:TLS_SYMBOL_MOVED'],
    );
    const added = tls(
      { vars: [{ name: 'a', value: 0n }] },
      {
        vars: [
          { name: 'a', value: 0n },
          { name: 'fresh', value: 32n },
        ],
      },
    );
    assert.deepEqual(codes(added), ['info:TLS_SYMBOL_ADDED']);
    assert.deepEqual(added.findings[0]!.symbols, ['fresh']);
    assert.equal(added.verdict, 'compatible');
  });

  it('reports a change of the static TLS model without refusing', () => {
    const r = tls({}, { staticTls: true });
    assert.deepEqual(codes(r), ['info:TLS_STATIC_CHANGED']);
    assert.equal(r.verdict, 'compatible');
  });
});
