/** The two RELRO modes the workbenches build libraries and programs in, and the linker flags of each. */
export type Relro = 'full' | 'partial';

export const RELRO_FLAGS: Record<Relro, string[]> = {
  full: ['-Wl,-z,relro,-z,now'],
  partial: ['-Wl,-z,relro,-z,lazy'],
};
