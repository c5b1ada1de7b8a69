/** ulp-pack as a user runs it (lab/cli.ts), and small helpers of the packer tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, type Run } from '../cli.js';

export type { Run };

export function ulpPack(args: string[], env: Record<string, string | undefined> = {}): Run {
  return runCli('ulp-pack', args, env);
}

/** A temporary folder per test file, removed afterwards. */
export function tempDir(): { path: string; dispose(): void } {
  const path = mkdtempSync(join(tmpdir(), 'ulp-pack-test-'));
  return { path, dispose: () => rmSync(path, { recursive: true, force: true }) };
}

/** Every finding of a report as `category:CODE`. */
export function codes(report: any): string[] {
  return Object.entries(report.categories).flatMap(([name, c]) =>
    (c as { findings: { code: string }[] }).findings.map((f) => `${name}:${f.code}`),
  );
}
