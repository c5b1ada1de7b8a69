/**
 * 64-bit values in the manifest are JSON strings, not numbers: a JSON number
 * loses precision above 2^53 and addends may be negative. Addresses are
 * unsigned `0x…`, addends may carry a leading `-`.
 */
export { hex } from '../common/format.js';

/** Inverse of `hex` (BigInt() alone rejects `-0x…`). */
export function parseHex(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
}
