/**
 * Where the checkout is, for every lab module, test and script: the one place
 * that knows lab/ sits directly under the repository root.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The C sources the tests and benchmarks compile (test/fixtures), and its build cache. */
export const FIXTURES = join(ROOT, 'test', 'fixtures');
