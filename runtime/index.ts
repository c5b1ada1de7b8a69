/**
 * Public API of the runtime's process-control layer (docs/RUNTIME.md).
 */
export { Session, withSession, type SessionOptions, type InjectionStep } from './session.js';
export type { PauseRecord } from './pause.js';
export { RemoteSyscalls, type RemoteArg, type SyscallOptions } from './remote-syscall.js';
export type { CallOptions } from './remote-call.js';
export { RemoteMemory, poke, openTargetFd } from './memory.js';
export { readMaps, parseMaps, headerMappings, findMapping, type Mapping } from './maps.js';
export { readAuxv, parseAuxv, auxvInfo, type Auxv, type AuxvInfo } from './auxv.js';
export {
  readLinkMap,
  findRDebug,
  elfInMemory,
  type LinkMap,
  type LoadedObject,
  type LinkMapOptions,
} from './linkmap.js';
export { checkTarget, type CheckOptions, type TargetInfo } from './target.js';
export { findStub, type StubInfo } from './stub/stub.js';
export { STUB_NAME, STUB_MAPS_NAME } from './stub/layout.js';
export { PROC_CODES, exited as processExited, type ProcCode } from './errors.js';
export { NR, PROT, MAP, MFD, F, F_SEAL, SIG, AT } from './sys/constants.js';
export { type Regs, REG_NAMES, signed } from './sys/regs.js';
export { u64 } from '../common/u64.js';
