/**
 * 64-bit values in the manifest are JSON strings, not numbers: a JSON number
 * loses precision above 2^53 and addends may be negative. Addresses are
 * unsigned `0x…`, addends may carry a leading `-`.
 */
export function hex(value: bigint | number): string {
  const v = BigInt(value);
  return v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16);
}

/** Inverse of `hex` (BigInt() alone rejects `-0x…`). */
export function parseHex(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
}
