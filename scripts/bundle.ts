/**
 * Makes the shipped dist/bin/ulp-pack.js one esbuild bundle of tsc's output
 * (lab/bundle.ts says what it keeps and why). `npm run build` and `prepare`
 * run it right after tsc:
 *
 *   node --import tsx scripts/bundle.ts [DIST]
 *
 * DIST is the folder tsc wrote (default dist/); it must hold tsc's own
 * bin/ulp-pack.js, which is replaced by the bundle's entry, with its chunks
 * in bin/ulp-pack-chunks/.
 */
import { join, resolve } from 'node:path';
import { bundlePack } from '../lab/bundle.js';
import { ROOT } from '../lab/root.js';
import { handleArgs } from '../lab/script-args.js';

handleArgs(import.meta.url, { operands: 1 });
const dist = process.argv[2] ? resolve(process.argv[2]) : join(ROOT, 'dist');
await bundlePack(dist, dist);
