/** Unsigned 64-bit words: what registers, slots and pointers in a target hold. */

/** `v` wrapped to an unsigned 64-bit value (a negative syscall result, a sign-extended register). */
export function u64(v: bigint | number): bigint {
  return BigInt.asUintN(64, BigInt(v));
}

/** `v` as the 8 little-endian bytes a 64-bit slot holds. */
export function u64Bytes(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(u64(v));
  return b;
}
