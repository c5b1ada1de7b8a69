/**
 * The compatibility report: what ulp-pack decided about one direction of a
 * pair of builds (old->new, or new->old for the reverse patch). The packer
 * produces it, the manifest stores it verbatim, and the trigger reads the
 * parts it needs (writable region, relocation sites, new imports). The schema
 * lives here, not in packer/, because the bundle layer validates it and the
 * trigger must not depend on the packer.
 */
import { z } from 'zod';
import { VERDICTS } from './verdicts.js';

export { CATEGORY_NAMES, VERDICTS, combineVerdicts, type CategoryName } from './verdicts.js';

export const HexSchema = z.string().regex(/^0x[0-9a-f]+$/, 'expected 0x-prefixed lower-case hex');
export const SignedHexSchema = z.string().regex(/^-?0x[0-9a-f]+$/, 'expected 0x-prefixed lower-case hex');
export const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex digits');
export const BuildIdSchema = z
  .string()
  .regex(/^(?:[0-9a-f]{2}){1,64}$/, 'expected a lower-case hex build-id');

export const VerdictSchema = z.enum(VERDICTS);
export type Verdict = z.infer<typeof VerdictSchema>;

export const SeveritySchema = z.enum(['info', 'warning', 'error']);
export type Severity = z.infer<typeof SeveritySchema>;

export const FindingSchema = z.object({
  /** error: makes the category incompatible; warning: printed, bundle still written; info: listed. */
  severity: SeveritySchema,
  /** Stable identifier, e.g. API_EXPORT_REMOVED; docs/COMPATIBILITY.md lists them. */
  code: z.string().regex(/^[A-Z][A-Z0-9_]*$/),
  message: z.string(),
  symbols: z.array(z.string()).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type Finding = z.infer<typeof FindingSchema>;

export const CategorySchema = z.object({
  verdict: VerdictSchema,
  /** One line for people, e.g. "3 functions changed, 1 added". */
  summary: z.string(),
  findings: z.array(FindingSchema),
});
export type Category = z.infer<typeof CategorySchema>;

export const SymbolRefSchema = z.object({
  name: z.string(),
  version: z.string().optional(),
});
export type SymbolRef = z.infer<typeof SymbolRefSchema>;

export const ImportRefSchema = SymbolRefSchema.extend({
  /** The library named by the symbol's VERNEED entry, when it is versioned. */
  library: z.string().optional(),
});
export type ImportRef = z.infer<typeof ImportRefSchema>;

export const TARGET_KINDS = ['code', 'writable', 'relro', 'readonly', 'symbol', 'tls', 'unknown'] as const;

/** What a relocation site holds once the loader has processed it. */
export const SiteTargetSchema = z.object({
  /**
   * code: an executable segment of this object (a function pointer to retarget);
   * writable / relro / readonly: data of this object;
   * symbol: whatever symbol lookup finds at load time (GOT entries, imports);
   * tls: a TLS module id or offset; unknown: none of these.
   */
  kind: z.enum(TARGET_KINDS),
  /** Link-time vaddr in this build, for targets inside the object (for `symbol`: the build's own definition, if any). */
  vaddr: HexSchema.optional(),
  /** Symbol containing the target (or the referenced symbol), when known. */
  symbol: z.string().optional(),
  /** Offset of the target from that symbol's start. */
  symbolOffset: HexSchema.optional(),
});
export type SiteTarget = z.infer<typeof SiteTargetSchema>;

/**
 * A relocation inside the writable region. Offsets from the region's start
 * and types are the same in both builds (a compatibility rule); addends and
 * targets may differ. `from` is the build being replaced in this direction,
 * `to` the one switched to.
 */
export const SiteSchema = z.object({
  offset: HexSchema,
  type: z.number().int().nonnegative(),
  typeName: z.string(),
  symbol: SymbolRefSchema.optional(),
  fromAddend: SignedHexSchema,
  toAddend: SignedHexSchema,
  fromTarget: SiteTargetSchema,
  toTarget: SiteTargetSchema,
});
export type Site = z.infer<typeof SiteSchema>;

export const RELRO_MODES = ['full', 'partial', 'none'] as const;

export const BuildSummarySchema = z.object({
  soname: z.string().optional(),
  buildId: BuildIdSchema.optional(),
  sha256: Sha256Schema,
  size: z.number().int().nonnegative(),
  relro: z.enum(RELRO_MODES),
  /** No .symtab: functions are known only from exports and unwind tables. */
  stripped: z.boolean(),
});
export type BuildSummary = z.infer<typeof BuildSummarySchema>;

const SizeCountSchema = z.object({
  count: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});

const RangeSchema = z.object({ start: HexSchema, end: HexSchema });
export const FunctionRangeSchema = RangeSchema.extend({ name: z.string().optional() });
export const FunctionPairSchema = z.object({
  name: z.string().optional(),
  /** name: by symbol; content: unnamed, identical code (never listed: pairs are changed functions); position: unnamed, between unchanged neighbours. */
  by: z.enum(['name', 'content', 'position']).optional(),
  from: RangeSchema,
  to: RangeSchema,
});
export type FunctionPair = z.infer<typeof FunctionPairSchema>;

export const FunctionChangesSchema = z.object({
  /** False when a build has no .symtab: changes are then counted, and named only for exports. */
  named: z.boolean(),
  changed: z.array(z.string()),
  added: z.array(z.string()),
  removed: z.array(z.string()),
  unchanged: z.number().int().nonnegative(),
  /** Totals over every function found (symbols, or unwind tables when stripped). */
  from: SizeCountSchema,
  to: SizeCountSchema,
  /** Stripped builds: functions without a name whose code matched none on the other side. */
  unnamedChanged: z.object({ from: SizeCountSchema, to: SizeCountSchema }).optional(),
  /**
   * Every changed function that has a counterpart, with its range [start, end)
   * in both builds (link-time vaddrs) and how it was paired
   * (packer/code/match.ts): the trigger puts a jump to the counterpart at
   * each `from` entry, so code reached through pointers taken before the
   * switch runs the `to` build too. Absent in bundles of format 1.0.
   */
  pairs: z.array(FunctionPairSchema).optional(),
  /** Changed or removed functions of `from` without a counterpart in `to`: reachable old code the trigger reports. */
  unpaired: z.array(FunctionRangeSchema).optional(),
});
export type FunctionChanges = z.infer<typeof FunctionChangesSchema>;

/**
 * (format 2) What must hold in the process at the switch for this direction
 * to be safe: `inactive` means no thread may be inside any of `functions`
 * (ranges of the `from` build) while every thread is stopped; the trigger
 * walks every call chain and refuses (LOADER_FUNCTION_ACTIVE) otherwise.
 */
export const ConditionSchema = z.object({
  kind: z.literal('inactive'),
  functions: z.array(FunctionRangeSchema).min(1),
  /** Why, for people. */
  reason: z.string(),
});
export type Condition = z.infer<typeof ConditionSchema>;

export const ReportSchema = z.object({
  verdict: VerdictSchema,
  from: BuildSummarySchema,
  to: BuildSummarySchema,
  categories: z.object({
    meta: CategorySchema,
    api: CategorySchema,
    code: CategorySchema,
    /** Absent in bundles of format 1.0 (written before the layout check existed). */
    layout: CategorySchema.optional(),
    init: CategorySchema,
    ro: CategorySchema,
    relro: CategorySchema,
    data: CategorySchema,
    tls: CategorySchema,
    funcptrs: CategorySchema,
  }),
  functions: FunctionChangesSchema,
  exports: z.object({ added: z.array(SymbolRefSchema), removed: z.array(SymbolRefSchema) }),
  /** Symbols `to` imports that `from` does not (the trigger must resolve them); and the reverse. */
  imports: z.object({ added: z.array(ImportRefSchema), removed: z.array(ImportRefSchema) }),
  needed: z.object({ added: z.array(z.string()), removed: z.array(z.string()) }),
  /**
   * The page-aligned writable region that survives RELRO, [start, end), of
   * the `from` build; null when the object has none. `to` is the `to`
   * build's region (since format 1.1): the same size and layout when the
   * verdict is not incompatible, possibly at another address (moved by whole
   * pages); absent in older bundles, where it equals [start, end). `sites`
   * are the relocations inside it (offsets: `from` build vaddrs).
   */
  writable: z
    .object({
      start: HexSchema,
      end: HexSchema,
      to: z.object({ start: HexSchema, end: HexSchema }).optional(),
      sites: z.array(SiteSchema),
    })
    .nullable(),
  /** (format 2) Conditions the trigger must check in each process; absent when there are none. */
  conditions: z.array(ConditionSchema).optional(),
});
export type Report = z.infer<typeof ReportSchema>;
