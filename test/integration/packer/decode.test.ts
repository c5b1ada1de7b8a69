/**
 * The parts of the code comparison that can be checked against binutils:
 * instruction boundaries and PC-relative targets (objdump -d is the oracle),
 * and function ranges from the unwind tables (readelf --debug-dump=frames).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { unwindRanges } from '../../../packer/code/ehframe.js';
import { Flow, REGISTER_NAMES, decode, endsStraightLine, newInsn } from '../../../elf/x86/decode.js';
import { libfix } from '../../../lab/packer/fixtures.js';

const SYSTEM = ['/usr/lib/x86_64-linux-gnu/libz.so.1', '/usr/lib/x86_64-linux-gnu/libexpat.so.1'].filter(
  existsSync,
);

interface Oracle {
  /** Instruction addresses. */
  starts: Set<number>;
  /** Address -> target objdump computed (branch targets and `# addr` of RIP-relative operands). */
  targets: Map<number, number>;
  /** Address -> the memory operand off a base register objdump prints (`-0x8(%rbp,%rax,8)`), as base/disp/indexed. */
  memory: Map<number, string>;
}

/** Implicit operands objdump prints like memory operands, without a ModRM: string instructions, xlat, in/out. */
const IMPLICIT =
  /^(?:rep[a-z]* )?(?:movs[bwlq]?|stos[bwlq]?|lods[bwlq]?|cmps[bwlq]?|scas[bwlq]?|ins[bwl]?|outs[bwl]?|xlatb?|in|out)(?:\s|$)/;

function objdump(file: string, section: string): Oracle {
  const out = execFileSync('objdump', ['-d', '-j', section, '--no-show-raw-insn', file], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const starts = new Set<number>();
  const targets = new Map<number, number>();
  const memory = new Map<number, string>();
  for (const line of out.split('\n')) {
    const m = /^\s+([0-9a-f]+):\t(.*)$/.exec(line);
    if (!m) continue;
    const at = parseInt(m[1]!, 16);
    const text = m[2]!;
    // objdump shows an fwait prefix (9b) as part of the next instruction; it is an instruction of its own.
    if (text.startsWith('fwait') || text === '') continue;
    starts.add(at);
    const rip = /\(%rip\).*# ([0-9a-f]+)/.exec(text);
    const branch = /(?:^|\s)(?:j[a-z]+|call|loop[a-z]*|xbegin)\s+([0-9a-f]+) </.exec(text);
    if (rip) targets.set(at, parseInt(rip[1]!, 16));
    else if (branch) targets.set(at, parseInt(branch[1]!, 16));
    const mem = /(-?0x[0-9a-f]+)?\(%(r[a-z0-9]+)(,%[a-z0-9]+)?(?:,\d)?\)/.exec(text);
    if (mem && mem[2] !== 'rip' && !IMPLICIT.test(text))
      memory.set(at, `${mem[2]} ${parseInt(mem[1] ?? '0', 16)}${mem[3] ? ' indexed' : ''}`);
  }
  return { starts, targets, memory };
}

function checkAgainstObjdump(file: string, section = '.text'): number {
  const obj = parseElf(readFileSync(file), { expect: 'any' });
  const sec = obj.section(section)!;
  const code = obj.readAt(sec.addr, Number(sec.size));
  const oracle = objdump(file, section);
  const ins = newInsn();
  const base = Number(sec.addr);
  let p = 0;
  let count = 0;
  while (p < code.length) {
    const at = base + p;
    assert.ok(oracle.starts.has(at), `${file}: no instruction starts at 0x${at.toString(16)} for objdump`);
    assert.ok(
      decode(code, p, code.length, ins),
      `${file}: cannot decode at 0x${at.toString(16)}: ${code.subarray(p, p + 8).toString('hex')}`,
    );
    const next = at + ins.length;
    const field = ins.relOff >= 0 ? ins.relOff : ins.ripOff;
    if (field >= 0) {
      const size = ins.relOff >= 0 ? ins.relSize : 4;
      const target = next + (size === 1 ? code.readInt8(p + field) : code.readInt32LE(p + field));
      assert.equal(
        target,
        oracle.targets.get(at),
        `${file}: target of the instruction at 0x${at.toString(16)}`,
      );
    } else {
      assert.equal(
        oracle.targets.get(at),
        undefined,
        `${file}: objdump sees a PC-relative target at 0x${at.toString(16)}`,
      );
    }
    // The layout check reads base and displacement: they must be what objdump prints.
    const disp =
      ins.base < 0
        ? undefined
        : ins.dispOff < 0
          ? 0
          : ins.dispSize === 1
            ? code.readInt8(p + ins.dispOff)
            : code.readInt32LE(p + ins.dispOff);
    const mine =
      ins.base < 0 ? undefined : `${REGISTER_NAMES[ins.base]} ${disp}${ins.indexed ? ' indexed' : ''}`;
    assert.equal(
      mine,
      oracle.memory.get(at),
      `${file}: memory operand of the instruction at 0x${at.toString(16)}: ${code.subarray(p, p + ins.length).toString('hex')}`,
    );
    p += ins.length;
    count++;
  }
  return count;
}

describe('packer: x86-64 decoder against objdump', () => {
  it('decodes the fixture library: every boundary and every PC-relative target', () => {
    assert.ok(checkAgainstObjdump(libfix({})) > 50);
    assert.ok(checkAgainstObjdump(libfix({}), '.plt') > 0);
  });

  for (const file of SYSTEM) {
    it(`decodes ${file} entirely`, () => {
      assert.ok(checkAgainstObjdump(file) > 10_000);
    });
  }

  it('classifies control flow and finds fields in VEX, EVEX and legacy encodings', () => {
    const cases: Array<[string, { length: number; flow?: Flow; relOff?: number; ripOff?: number }]> = [
      ['e800000000', { length: 5, flow: Flow.Call, relOff: 1 }],
      ['e9fbffffff', { length: 5, flow: Flow.Jmp, relOff: 1 }],
      ['ebfe', { length: 2, flow: Flow.Jmp, relOff: 1 }],
      ['0f8410000000', { length: 6, flow: Flow.Jcc, relOff: 2 }],
      ['c3', { length: 1, flow: Flow.Ret }],
      ['0f0b', { length: 2, flow: Flow.Stop }],
      ['ff2510000000', { length: 6, flow: Flow.IndirectJmp, ripOff: 2 }],
      ['f2ff2510000000', { length: 7, flow: Flow.IndirectJmp, ripOff: 3 }],
      ['ffd0', { length: 2, flow: Flow.IndirectCall }],
      ['488b0510000000', { length: 7, ripOff: 3 }],
      ['c70510000000efbeadde', { length: 10, ripOff: 2 }],
      ['66833d1000000001', { length: 8, ripOff: 3 }],
      ['c4e2791805f0ffffff', { length: 9, ripOff: 5 }],
      ['c5f96f0510000000', { length: 8, ripOff: 4 }],
      ['62f17c48280510000000', { length: 10, ripOff: 6 }],
      ['c4e37d18051000000001', { length: 10, ripOff: 5 }],
      ['660f3a0fc108', { length: 6 }],
      ['660f3800c1', { length: 5 }], // pshufb: the 0F 38 map, ModRM and no immediate
      ['660f38dc4f10', { length: 6 }], // aesenc 0x10(%rdi),%xmm1
      ['0f0fc1b4', { length: 4 }], // 3DNow!: ModRM, then the opcode as an imm8
      ['f30f1efa', { length: 4 }],
      ['48b88877665544332211', { length: 10 }],
      ['66b83412', { length: 4 }],
      ['c7f810000000', { length: 6, flow: Flow.Jcc, relOff: 2 }],
      ['a11122334455667788', { length: 9 }],
      ['f6c101', { length: 3 }],
      ['f7c101000000', { length: 6 }],
      ['c8100000', { length: 4 }],
    ];
    const ins = newInsn();
    for (const [hex, want] of cases) {
      const buf = Buffer.from(hex, 'hex');
      assert.ok(decode(buf, 0, buf.length, ins), hex);
      assert.equal(ins.length, want.length, `${hex}: length`);
      assert.equal(ins.flow, want.flow ?? Flow.Seq, `${hex}: flow`);
      assert.equal(ins.relOff, want.relOff ?? -1, `${hex}: rel field`);
      assert.equal(ins.ripOff, want.ripOff ?? -1, `${hex}: rip field`);
      // Only jumps, returns, traps and indirect jumps end a straight-line walk; calls and conditional jumps fall through.
      const ends = [Flow.Jmp, Flow.Ret, Flow.Stop, Flow.IndirectJmp].includes(ins.flow);
      assert.equal(endsStraightLine(ins.flow), ends, `${hex}: ends a straight line`);
    }
  });

  it('refuses bytes that are not an instruction, and never reads past the end', () => {
    const ins = newInsn();
    for (const hex of ['06', '0f0f', 'e8000000', '8f', '66', 'c4', '62f17c48']) {
      const buf = Buffer.from(hex, 'hex');
      assert.equal(decode(buf, 0, buf.length, ins), false, hex);
    }
  });
});

describe('packer: function ranges from .eh_frame against readelf', () => {
  for (const file of [libfix({}), ...SYSTEM]) {
    it(file.replace(/.*\//, ''), () => {
      const out = execFileSync('readelf', ['--debug-dump=frames', file], {
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      });
      const want = [...out.matchAll(/FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)/g)]
        .map((m) => `${parseInt(m[1]!, 16)}-${parseInt(m[2]!, 16)}`)
        .sort();
      const got = unwindRanges(parseElf(readFileSync(file)))
        .map((r) => `${r.start}-${r.end}`)
        .sort();
      assert.ok(want.length > 0);
      assert.deepEqual(got, want);
    });
  }
});
