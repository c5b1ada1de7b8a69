/** The names of a bundle's tar entries (docs/BUNDLE.md#container), apart from the manifest schema so that readers of one entry need not load zod. */
export const ENTRY_MANIFEST = 'ulp.json';
export const ENTRY_NEW = 'new.so';
export const ENTRY_OLD = 'old.so';
export const ENTRY_SIGNATURE = 'signature';
