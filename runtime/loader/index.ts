/**
 * The loader as one layer: what the trigger may use. Reading a process
 * (snapshot, library state, --status facts), the one switch operation
 * (prepare, then switchLibrary: plan, stage, pause) and the names ulp gives
 * what it maps. Everything else under runtime/loader/ is internal to it.
 *
 * Importing this module loads the runtime (koffi). Pure callers that only
 * decide (trigger/decide.ts) import lineage.ts instead.
 */
export { ElfCache } from './elf-cache.js';
export { lostBindings } from './bindings.js';
export { buildMemfdName, dataMemfdName, metaMemfdName, parseMemfdPath } from '../memfd-names.js';
export type { Family, ProcessObject, Region } from './model.js';
export { globalScope } from './scope.js';
export { takeSnapshot, type Snapshot } from './snapshot.js';
export { findDataPointers, readLibraryState, type LibraryState } from './library.js';
export { lineageOf, stackedOn, type Lineage } from './lineage.js';
export {
  prepare,
  switchLibrary,
  type Prepared,
  type RedirectReport,
  type SwitchReport,
  type SwitchRequest,
} from './switch-library.js';
export { forkSummary, readForkStatus, type ForkStatus } from './fork/index.js';
export { FORK_PAGE_SIZE } from './fork/layout.js';
export { readRedirectState } from './redirect-switch.js';
export type { Journal } from './redirect-journal.js';
export { buildKey } from './redirects.js';
