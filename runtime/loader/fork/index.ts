/** Fork protection of patched processes (docs/FORK.md). */
export { ensureForkProtection, forgetForkAliases, publishForkAlias, type ForkProtection } from './protect.js';
export { forkSummary, readForkStatus, type ForkStatus } from './status.js';
