/** The decoder lives in elf/x86 so that the runtime (entry redirects) can use it too; the packer keeps its import path. */
export * from '../../elf/x86/decode.js';
