/**
 * Caps applied while reading a bundle, before anything is trusted. They bound
 * memory for any input, including a gzip bomb: gunzip stops at `archiveBytes`.
 * The defaults fit every shared library on a normal system (libLLVM is about
 * 130 MB) with a wide margin; docs/BUNDLE.md lists them.
 */
export interface BundleLimits {
  /** The .ulp file itself (compressed). */
  fileBytes: number;
  /** The tar stream after gunzip: headers, entries, padding. */
  archiveBytes: number;
  /** Each of old.so and new.so. */
  buildBytes: number;
  /** ulp.json. */
  manifestBytes: number;
  /** The signature entry. */
  signatureBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_LIMITS: Readonly<BundleLimits> = Object.freeze({
  fileBytes: 1024 * MiB,
  archiveBytes: 1100 * MiB,
  buildBytes: 512 * MiB,
  manifestBytes: 32 * MiB,
  signatureBytes: 4096,
});

export function withDefaults(limits?: Partial<BundleLimits>): BundleLimits {
  return { ...DEFAULT_LIMITS, ...limits };
}
