/**
 * A failed libc call, carrying errno. It is internal to runtime/: the
 * session and the memory helpers translate it into a UlpError with a PROC_
 * code before it reaches a caller.
 */
import { constants } from 'node:os';

const names = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) if (!names.has(value)) names.set(value, name);

export const ESRCH = constants.errno.ESRCH;
export const EPERM = constants.errno.EPERM;
export const EFAULT = constants.errno.EFAULT;
export const EIO = constants.errno.EIO;
export const ECHILD = constants.errno.ECHILD;
export const EINTR = constants.errno.EINTR;
export const EINVAL = constants.errno.EINVAL;
export const EBUSY = constants.errno.EBUSY;

export function errnoName(errno: number): string {
  return names.get(errno) ?? `errno ${errno}`;
}

export class SysError extends Error {
  override readonly name = 'SysError';
  constructor(
    readonly op: string,
    readonly errno: number,
  ) {
    super(`${op}: ${errnoName(errno)}`);
  }
}
