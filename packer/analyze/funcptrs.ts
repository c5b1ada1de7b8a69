/**
 * funcptrs: words of the writable region that the loader set to the address
 * of code in this library (function pointers in initialised data). After the
 * switch they still point into the old build; the trigger retargets each one
 * the program has not overwritten, which needs both targets. Sites whose
 * target moved or whose function changed are listed; the manifest carries
 * all of them (report.writable.sites).
 */
import type { Category, Site } from '../../patches/index.js';
import { parseHex } from '../../patches/hex.js';
import { Findings, listText, plural } from './findings.js';

const show = (t: Site['fromTarget']) =>
  `${t.symbol ?? '?'}${t.symbolOffset && t.symbolOffset !== '0x0' ? `+${t.symbolOffset}` : ''} (${t.vaddr ?? t.kind})`;

export function analyzeFuncptrs(sites: Site[], changedFunctions: ReadonlySet<string>): Category {
  const f = new Findings();
  const code = sites.filter((s) => s.fromTarget.kind === 'code' || s.toTarget.kind === 'code');
  const retargeted = code.filter(
    (s) =>
      s.fromTarget.kind !== s.toTarget.kind ||
      s.fromTarget.symbol !== s.toTarget.symbol ||
      s.fromTarget.vaddr !== s.toTarget.vaddr ||
      (s.fromTarget.symbol !== undefined && changedFunctions.has(s.fromTarget.symbol)),
  );
  if (retargeted.length) {
    const lines = retargeted.map(
      (s) => `0x${parseHex(s.offset).toString(16)}: ${show(s.fromTarget)} -> ${show(s.toTarget)}`,
    );
    f.info(
      'FUNCPTR_RETARGETED',
      `${plural(retargeted.length, 'function pointer')} in writable data must be retargeted to the new code: ${listText(lines, 4)}`,
      [
        ...new Set(
          retargeted.flatMap((s) => [s.fromTarget.symbol, s.toTarget.symbol]).filter((x): x is string => !!x),
        ),
      ],
      {
        sites: retargeted.map((s) => ({ offset: s.offset, from: s.fromTarget, to: s.toTarget })),
      },
    );
  }
  return f.category(`${plural(code.length, 'function pointer')}, ${retargeted.length} retargeted`);
}
