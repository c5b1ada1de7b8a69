/**
 * Collecting findings and turning them into a category verdict: any error
 * makes the category incompatible; otherwise any difference (a finding, or a
 * change the caller reports) makes it a compatible change.
 */
import type { Category, Finding, Severity } from '../../patches/index.js';

/** Lists in messages are cut here; the full list stays in `symbols`/`details`. */
const SHOWN = 8;

export function listText(items: readonly string[], shown = SHOWN): string {
  if (items.length <= shown) return items.join(', ');
  return `${items.slice(0, shown).join(', ')} and ${items.length - shown} more`;
}

export class Findings {
  readonly list: Finding[] = [];

  add(
    severity: Severity,
    code: string,
    message: string,
    symbols?: readonly string[],
    details?: Record<string, unknown>,
  ): void {
    const f: Finding = { severity, code, message };
    if (symbols && symbols.length > 0) f.symbols = [...symbols];
    if (details) f.details = details;
    this.list.push(f);
  }
  error(code: string, message: string, symbols?: readonly string[], details?: Record<string, unknown>): void {
    this.add('error', code, message, symbols, details);
  }
  warning(
    code: string,
    message: string,
    symbols?: readonly string[],
    details?: Record<string, unknown>,
  ): void {
    this.add('warning', code, message, symbols, details);
  }
  info(code: string, message: string, symbols?: readonly string[], details?: Record<string, unknown>): void {
    this.add('info', code, message, symbols, details);
  }

  category(summary: string, changed = false): Category {
    const verdict = this.list.some((f) => f.severity === 'error')
      ? 'incompatible'
      : changed || this.list.length > 0
        ? 'compatible'
        : 'unchanged';
    return { verdict, summary, findings: this.list };
  }
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
