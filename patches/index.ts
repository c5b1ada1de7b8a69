/** The .ulp bundle: what the packer writes and the trigger reads. See docs/BUNDLE.md. */
export {
  BundleEncoder,
  decodeBundle,
  encodeBundle,
  type Bundle,
  type BundleContents,
  type DecodeOptions,
  type EncodeOptions,
} from './bundle.js';
export {
  BundleDataRefsSchema,
  DataRefsSchema,
  decodeDataRefs,
  encodeDataRefs,
  type BundleDataRefs,
  type CodeRef,
  type Coverage,
  type CoverageRange,
  type DataRefs,
  type StoredDataRefs,
  type WordRef,
} from './datarefs.js';
export {
  blockingFindings,
  EXPORT_REMOVAL_CODES,
  patchStep,
  recordedToRegion,
  removedExports,
  type PatchStep,
} from './direction.js';
export { checkWritableDestination, readBundleFile, writeFileAtomic } from './file.js';
export { hex, parseHex } from './hex.js';
export { DEFAULT_LIMITS, type BundleLimits } from './limits.js';
export {
  ENTRY_MANIFEST,
  ENTRY_NEW,
  ENTRY_OLD,
  ENTRY_SIGNATURE,
  FORMAT_VERSION,
  ManifestSchema,
  createManifest,
  parseManifest,
  patchIdOf,
  serializeManifest,
  sha256Hex,
  type BuildEntry,
  type Direction,
  type Manifest,
  type ManifestInput,
  type PackageInfo,
  PackageInfoSchema,
} from './manifest.js';
export * from './report.js';
export { keyIdOf, loadPrivateKey, loadPublicKey, signedMessage, type SignatureStatus } from './signature.js';
