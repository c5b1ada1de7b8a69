/**
 * ulp.json: the manifest of a bundle. The zod schema is the single definition
 * of its shape (the TypeScript type is inferred from it). docs/BUNDLE.md
 * documents every field; change both together and bump FORMAT_VERSION by the
 * rules written there.
 */
import { createHash } from 'node:crypto';
import semver from 'semver';
import { z } from 'zod';
import { UlpError } from '../common/errors.js';
import { canonicalJson } from './canonical-json.js';
import { CVE_RE } from './cve.js';
import { BundleDataRefsSchema, type BundleDataRefs } from './datarefs.js';
import { ENTRY_MANIFEST, ENTRY_NEW, ENTRY_OLD } from './entries.js';
import { BuildIdSchema, ReportSchema, Sha256Schema, VerdictSchema, type Report } from './report.js';

/** The format this code writes for a bundle without conditions; it reads any 1.x and 2.x. */
export const FORMAT_VERSION = '1.1.0';
/**
 * The format of a bundle whose report carries conditions (report.ts ConditionSchema): a new major,
 * so that a trigger that knows nothing of them refuses the bundle (BUNDLE_FORMAT_UNSUPPORTED)
 * rather than ignores them.
 */
export const CONDITIONS_FORMAT_VERSION = '2.0.0';
const SUPPORTED_MAJORS = [1, 2];
/** The patch id's derivation is that of format 1 whatever the format: one pair of builds, one id. */
const ID_MAJOR = 1;

export { ENTRY_MANIFEST, ENTRY_NEW, ENTRY_OLD, ENTRY_SIGNATURE } from './entries.js';

const buildEntry = <E extends string>(entry: E) =>
  z.object({
    /** Name of the tar entry holding this build. */
    entry: z.literal(entry),
    buildId: BuildIdSchema,
    sha256: Sha256Schema,
    size: z.number().int().positive(),
  });
export const OldBuildEntrySchema = buildEntry(ENTRY_OLD);
export const NewBuildEntrySchema = buildEntry(ENTRY_NEW);
export type BuildEntry = z.infer<typeof OldBuildEntrySchema> | z.infer<typeof NewBuildEntrySchema>;

const direction = <F extends 'old' | 'new', T extends 'old' | 'new'>(from: F, to: T) =>
  z
    .object({
      from: z.literal(from),
      to: z.literal(to),
      /** The report's verdict, repeated so that a reader can decide without walking the report. */
      verdict: VerdictSchema,
      report: ReportSchema,
    })
    .refine((d) => d.verdict === d.report.verdict, 'verdict differs from report.verdict');
export const ForwardSchema = direction('old', 'new');
export const ReverseSchema = direction('new', 'old');
export type Direction = z.infer<typeof ForwardSchema> | z.infer<typeof ReverseSchema>;

/**
 * What the update is, for an operator (format 1.1): the package, its
 * versions on both sides, the CVEs fixed. Every field optional; ulp-pack
 * takes them from its options or the builds' package notes.
 */
export const PackageInfoSchema = z.object({
  name: z.string().min(1).max(128).optional(),
  fromVersion: z.string().min(1).max(128).optional(),
  toVersion: z.string().min(1).max(128).optional(),
  fixes: z.array(z.string().regex(CVE_RE)).max(1000).optional(),
});
export type PackageInfo = z.infer<typeof PackageInfoSchema>;

export const ManifestSchema = z.object({
  format: z.string().refine((v) => semver.valid(v) !== null, 'expected a semver version'),
  /** Content hash identifying the patch; see patchIdOf. */
  patchId: z.string().regex(/^[0-9a-f]{32}$/),
  tool: z.object({ name: z.string(), version: z.string() }),
  /** ISO 8601, UTC, whole seconds. Not part of the patch id. */
  createdAt: z.iso.datetime(),
  soname: z.string().min(1),
  builds: z.object({ old: OldBuildEntrySchema, new: NewBuildEntrySchema }),
  /** old -> new: the patch. */
  forward: ForwardSchema,
  /** new -> old: what a revert switches to, analysed the same way. */
  reverse: ReverseSchema,
  /** Format 1.1: the package facts, when known. */
  package: PackageInfoSchema.optional(),
  /** Format 1.1: present (true) when the new build looked older and the bundle was written with --allow-downgrade. */
  downgrade: z.literal(true).optional(),
  /**
   * Since 1.1: each build's data-reference map, which the trigger rewrites when it stages that
   * build (`new` for the patch, `old` for a revert that loads the old build). Absent in 1.0 bundles.
   */
  datarefs: BundleDataRefsSchema.optional(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** The facts that define a patch: which library, from which exact build to which. */
export function patchIdOf(soname: string, old: BuildEntry, neu: BuildEntry): string {
  const pick = (b: BuildEntry) => ({ buildId: b.buildId, sha256: b.sha256, size: b.size });
  const defining = { kind: 'ulp-patch-id', major: ID_MAJOR, soname, old: pick(old), new: pick(neu) };
  return createHash('sha256').update(canonicalJson(defining)).digest('hex').slice(0, 32);
}

export interface ManifestInput {
  soname: string;
  oldBuild: Buffer;
  newBuild: Buffer;
  oldBuildId: string;
  newBuildId: string;
  createdAt: Date;
  tool: { name: string; version: string };
  forward: Report;
  reverse: Report;
  package?: PackageInfo;
  downgrade?: true;
  datarefs?: BundleDataRefs;
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function createManifest(input: ManifestInput): Manifest {
  const old = {
    entry: ENTRY_OLD,
    buildId: input.oldBuildId,
    sha256: sha256Hex(input.oldBuild),
    size: input.oldBuild.length,
  } as const;
  const neu = {
    entry: ENTRY_NEW,
    buildId: input.newBuildId,
    sha256: sha256Hex(input.newBuild),
    size: input.newBuild.length,
  } as const;
  const conditional = !!(input.forward.conditions?.length || input.reverse.conditions?.length);
  const manifest: Manifest = {
    format: conditional ? CONDITIONS_FORMAT_VERSION : FORMAT_VERSION,
    patchId: patchIdOf(input.soname, old, neu),
    tool: input.tool,
    createdAt: isoSeconds(input.createdAt),
    soname: input.soname,
    builds: { old, new: neu },
    forward: { from: 'old', to: 'new', verdict: input.forward.verdict, report: input.forward },
    reverse: { from: 'new', to: 'old', verdict: input.reverse.verdict, report: input.reverse },
    ...(input.package && Object.keys(input.package).length > 0 ? { package: input.package } : {}),
    ...(input.downgrade ? { downgrade: true as const } : {}),
    ...(input.datarefs ? { datarefs: input.datarefs } : {}),
  };
  // Validating what we write catches a packer that produced a report the readers would refuse.
  return validateManifest(manifest);
}

export function isoSeconds(date: Date): string {
  if (Number.isNaN(date.getTime()))
    throw new UlpError(
      'BUNDLE_BAD_TIME',
      'the creation time is not a valid date',
      'Give an ISO 8601 time or seconds since the epoch.',
    );
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** The exact bytes of ulp.json for a manifest (canonical, so writing is deterministic). */
export function serializeManifest(manifest: Manifest): Buffer {
  return Buffer.from(canonicalJson(manifest), 'utf8');
}

/**
 * Parses ulp.json. The format version is checked before the schema so that a
 * bundle from a newer major version is refused with its version named, not
 * with a list of schema errors. Newer minor versions are read: their extra
 * fields are ignored.
 */
export function parseManifest(bytes: Buffer): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new UlpError(
      'BUNDLE_MANIFEST_INVALID',
      `${ENTRY_MANIFEST} is not valid JSON: ${(err as Error).message}`,
      'The bundle is damaged or was not written by ulp-pack; rebuild it.',
    );
  }
  const format = json && typeof json === 'object' ? (json as { format?: unknown }).format : undefined;
  if (typeof format !== 'string' || semver.valid(format) === null) {
    throw new UlpError(
      'BUNDLE_MANIFEST_INVALID',
      `${ENTRY_MANIFEST} has no valid "format" version`,
      'The bundle is damaged or was not written by ulp-pack; rebuild it.',
      { format },
    );
  }
  if (!SUPPORTED_MAJORS.includes(semver.major(format))) {
    const supported = SUPPORTED_MAJORS.map((m) => `${m}.x`).join(' and ');
    throw new UlpError(
      'BUNDLE_FORMAT_UNSUPPORTED',
      `bundle format ${format} is not supported (this tool reads format ${supported})`,
      semver.major(format) > SUPPORTED_MAJORS[SUPPORTED_MAJORS.length - 1]!
        ? 'Use a newer ulp release to read this bundle.'
        : 'Rebuild the bundle with this ulp release.',
      { format, supported },
    );
  }
  return validateManifest(json);
}

function validateManifest(value: unknown): Manifest {
  const parsed = ManifestSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 20)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new UlpError(
      'BUNDLE_MANIFEST_INVALID',
      `${ENTRY_MANIFEST} does not match the manifest schema: ${issues[0]}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`,
      'The bundle is damaged or was not written by ulp-pack; rebuild it.',
      { issues },
    );
  }
  const m = parsed.data;
  // Conditions an older trigger would ignore are only valid under the major that makes it refuse the bundle.
  if (
    (m.forward.report.conditions?.length || m.reverse.report.conditions?.length) &&
    semver.major(m.format) < 2
  ) {
    throw new UlpError(
      'BUNDLE_MANIFEST_INVALID',
      `${ENTRY_MANIFEST} carries conditions under format ${m.format}, which does not know them`,
      'The bundle was altered or made by another tool; rebuild it with ulp-pack.',
      { format: m.format },
    );
  }
  if (m.forward.verdict === 'incompatible') {
    throw new UlpError(
      'BUNDLE_INCOMPATIBLE',
      "the bundle's own report marks the update as incompatible",
      'ulp-pack never writes such a bundle: it was altered or produced by something else; rebuild it with ulp-pack.',
    );
  }
  if (m.patchId !== patchIdOf(m.soname, m.builds.old, m.builds.new)) {
    throw new UlpError(
      'BUNDLE_PATCH_ID_MISMATCH',
      `the patch id ${m.patchId} does not match the builds the manifest describes`,
      'The manifest was edited after packing; rebuild the bundle.',
      { patchId: m.patchId },
    );
  }
  return m;
}
