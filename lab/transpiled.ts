/**
 * TypeScript sources transpiled once to plain JavaScript (TypeScript's
 * transpileModule, no type check: `npm run typecheck` does that), cached by
 * content in test/fixtures/build. Node then runs them without tsx, which
 * costs a fraction of a second less per process: it adds up over the
 * hundreds of command runs and tracer processes of the suite. Imports
 * already carry `.js` suffixes, so the output runs as-is; it sits inside the
 * repository so that `koffi` and the other dependencies resolve from
 * node_modules.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import ts from 'typescript';
import { BUILD } from './compile.js';
import { ROOT } from './root.js';

/** Every .ts file under `dir` (relative to ROOT), sorted. */
export function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? tsFiles(join(dir, e.name))
        : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')
          ? [join(dir, e.name)]
          : [],
    )
    .sort();
}

/**
 * The folder holding `files` (paths relative to ROOT) as .js at the same
 * relative paths, plus `copies` as they are (package.json: the ESM type and
 * the version the commands print). Built on first use of this content.
 */
export function transpiled(name: string, files: readonly string[], copies: readonly string[] = []): string {
  const hash = createHash('sha256');
  for (const f of [...files, ...copies]) hash.update(f).update(readFileSync(join(ROOT, f)));
  const out = join(BUILD, `${name}-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  for (const f of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
      fileName: f,
    }).outputText;
    const dest = join(tmp, f.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  for (const f of copies) {
    mkdirSync(dirname(join(tmp, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(tmp, f));
  }
  if (existsSync(out))
    rmSync(tmp, { recursive: true, force: true }); // another test process won the race; both outputs are equal
  else renameSync(tmp, out);
  return out;
}
