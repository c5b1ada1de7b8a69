/**
 * Plans the entry redirects of a switch: which functions of the builds that
 * are not live get a jump to their counterpart in the build being made live,
 * which jumps written by earlier switches are retargeted or taken back, and
 * which old functions stay reachable, and why. Pure: the caller reads code
 * and symbols from the process and the bundle.
 *
 * Why: the relink moves every GOT slot, but a pointer the program copied
 * before the switch (a method table on the heap, a callback stored in the
 * library's data, a dlsym result, a static const ops table) still leads into
 * the old build. A jump at the old entry sends those calls to the live build.
 * Linked calls never pass through one: the GOT points at the live build.
 *
 * Counterparts come from the bundles' function pairs, accumulated in the
 * journal across switches, so that any build present in the process can be
 * redirected straight to whichever build is live (v1 -> v2 -> v3: v1's jumps
 * go to v3, not through v2; reverted to v1: v2's and v3's jumps go to v1,
 * which is how a pointer taken while patched reaches the reverted code). A
 * function the pairs do not link to the live build is found by name in its
 * symbols when it has one; otherwise it is reported as reachable.
 */
import type { ProcessObject } from './model.js';
import { describeRefusal, planEntry } from './redirect-code.js';
import { hex, shortBuildId } from '../../common/format.js';
import { fnKey, type Fn, type Journal } from './redirect-journal.js';

/** One bundle step's function lists (patches/report.ts FunctionChanges), as link-time hex vaddrs. */
export interface StepFunctions {
  fromBuildId: string;
  toBuildId: string;
  pairs: ReadonlyArray<{
    name?: string | undefined;
    from: { start: string; end: string };
    to: { start: string; end: string };
  }>;
  unpaired: ReadonlyArray<{ name?: string | undefined; start: string; end: string }>;
  /** Changed functions by name, for bundles without pairs: reported as reachable when nothing else covers them. */
  changed?: readonly string[];
}

export interface RedirectInput {
  builds: readonly ProcessObject[];
  target: ProcessObject;
  previous: Journal | undefined;
  /** Jumps of the previous journal still in memory (their bytes read as written). */
  active: Journal['redirects'];
  step: StepFunctions | undefined;
  /** Original bytes of a build's [start, end) (link-time vaddrs), or undefined when unreadable. */
  code(build: ProcessObject, start: bigint, end: bigint): Buffer | undefined;
  /** A function symbol of the build by name: [start, end) as link-time vaddrs. */
  lookup(build: ProcessObject, name: string): { start: bigint; end: bigint } | undefined;
}

export interface CodeWrite {
  at: bigint;
  bytes: Buffer;
  /** What the code must hold when written (checked in the pause). */
  expect: Buffer;
}

export interface Redirect {
  at: bigint;
  original: Buffer;
  written: Buffer;
  from: Fn;
  to: Fn;
}

export interface RedirectPlan {
  /** Every jump that should be active once the target is live. */
  redirects: Redirect[];
  /** Of those, the ones to write (new, or retargeted). */
  writes: Array<CodeWrite & { redirect: Redirect }>;
  /** Active jumps that must go: their original bytes back. */
  restores: CodeWrite[];
  uncovered: Journal['uncovered'];
  pairs: Journal['pairs'];
  unpaired: Journal['unpaired'];
}

export const buildKey = (b: ProcessObject): string => b.buildId ?? hex(b.bias);

export function planRedirects(input: RedirectInput): RedirectPlan {
  const { target } = input;
  const T = buildKey(target);
  const byKey = new Map(input.builds.map((b) => [buildKey(b), b]));
  const pairs = mergePairs(input.previous?.pairs ?? [], input.step);
  const unpaired = mergeUnpaired(input.previous?.unpaired ?? [], input.step);

  const nodes = new Map<string, Fn>();
  const edges = new Map<string, string[]>();
  for (const { a, b } of pairs) {
    nodes.set(fnKey(a), a);
    nodes.set(fnKey(b), b);
    edges.set(fnKey(a), [...(edges.get(fnKey(a)) ?? []), fnKey(b)]);
    edges.set(fnKey(b), [...(edges.get(fnKey(b)) ?? []), fnKey(a)]);
  }
  // Classes of counterparts (connected components), each with the live build's member if the pairs name one.
  const classOf = new Map<string, number>();
  const classes: Fn[][] = [];
  for (const k of nodes.keys()) {
    if (classOf.has(k)) continue;
    const members: Fn[] = [];
    const queue = [k];
    classOf.set(k, classes.length);
    while (queue.length) {
      const cur = queue.shift()!;
      members.push(nodes.get(cur)!);
      for (const n of edges.get(cur) ?? []) {
        if (!classOf.has(n)) {
          classOf.set(n, classes.length);
          queue.push(n);
        }
      }
    }
    classes.push(members);
  }

  const uncovered: Journal['uncovered'] = [];
  const wanted = new Map<string, { from: Fn; to: Fn }>();
  const fnOf = (b: ProcessObject, r: { start: bigint; end: bigint }, name: string | undefined): Fn => ({
    build: buildKey(b),
    start: hex(r.start),
    end: hex(r.end),
    ...(name ? { name } : {}),
  });
  for (const members of classes) {
    const names = [...new Set(members.map((m) => m.name).filter((n): n is string => n !== undefined))];
    let dest = members.find((m) => m.build === T);
    if (!dest) {
      for (const n of names) {
        const r = input.lookup(target, n);
        if (r) {
          dest = fnOf(target, r, n);
          break;
        }
      }
    }
    const present = members.filter((m) => m.build !== T && byKey.has(m.build));
    if (!dest) {
      for (const m of present)
        uncovered.push({ fn: m, reason: `no counterpart in the live build ${shortBuildId(T)} is known` });
      continue;
    }
    for (const m of present) if (!wanted.has(fnKey(m))) wanted.set(fnKey(m), { from: m, to: dest });
    // Builds the pairs do not reach (an older build whose function did not change in a later step): by name.
    for (const b of input.builds) {
      const k = buildKey(b);
      if (k === T || members.some((m) => m.build === k)) continue;
      const found = names.map((n) => ({ n, r: input.lookup(b, n) })).find((x) => x.r);
      if (found) {
        const from = fnOf(b, found.r!, found.n);
        if (!wanted.has(fnKey(from))) wanted.set(fnKey(from), { from, to: dest });
      } else {
        uncovered.push({
          fn: { build: k, start: '0x0', end: '0x0', ...(names[0] ? { name: names[0] } : {}) },
          reason: `build ${shortBuildId(k)} has no symbol that names its copy of ${names[0] ?? `the function at ${dest.start} of the live build`}`,
        });
      }
    }
  }
  for (const u of unpaired) {
    if (u.build === T || !byKey.has(u.build) || wanted.has(fnKey(u))) continue;
    const r = u.name ? input.lookup(target, u.name) : undefined;
    if (r) wanted.set(fnKey(u), { from: u, to: fnOf(target, r, u.name) });
    else
      uncovered.push({
        fn: u,
        reason: `no counterpart in the live build ${shortBuildId(T)} (removed, or not matched by ulp-pack)`,
      });
  }
  if (
    input.step &&
    input.step.pairs.length === 0 &&
    input.step.unpaired.length === 0 &&
    input.step.changed?.length &&
    input.step.toBuildId === T
  ) {
    // A bundle made before function pairs existed: its changed functions cannot be redirected.
    for (const name of input.step.changed)
      if (input.step.fromBuildId !== T)
        uncovered.push({
          fn: { build: input.step.fromBuildId, start: '0x0', end: '0x0', name },
          reason: 'the bundle lists no function pairs (made by an older ulp-pack)',
        });
  }

  const redirects: Redirect[] = [];
  for (const { from, to } of wanted.values()) {
    const b = byKey.get(from.build)!;
    const start = BigInt(from.start);
    const end = BigInt(from.end);
    const code = input.code(b, start, end);
    if (!code) {
      uncovered.push({ fn: from, reason: 'its code could not be read' });
      continue;
    }
    const entry = b.bias + start;
    const site = planEntry(code, entry, target.bias + BigInt(to.start));
    if ('reason' in site) {
      uncovered.push({ fn: from, reason: describeRefusal(site) });
      continue;
    }
    redirects.push({
      at: entry + BigInt(site.offset),
      original: code.subarray(site.offset, site.offset + site.bytes.length),
      written: site.bytes,
      from,
      to,
    });
  }

  const active = new Map(input.active.map((r) => [BigInt(r.at), r]));
  const writes: RedirectPlan['writes'] = [];
  for (const r of redirects) {
    const old = active.get(r.at);
    if (old && Buffer.from(old.written, 'hex').equals(r.written)) continue;
    // A retargeted jump may be shorter than the one it replaces: the rest of the old jump goes back to the original bytes.
    const oldWritten = old ? Buffer.from(old.written, 'hex') : undefined;
    const bytes =
      oldWritten && oldWritten.length > r.written.length
        ? Buffer.concat([r.written, Buffer.from(old!.original, 'hex').subarray(r.written.length)])
        : r.written;
    const expect = oldWritten ?? r.original;
    const len = Math.max(bytes.length, expect.length);
    writes.push({
      at: r.at,
      bytes: pad(bytes, r.original, len),
      expect: pad(expect, r.original, len),
      redirect: r,
    });
  }
  const keep = new Set(redirects.map((r) => r.at));
  const restores: CodeWrite[] = input.active
    .filter((r) => !keep.has(BigInt(r.at)))
    .map((r) => ({
      at: BigInt(r.at),
      bytes: Buffer.from(r.original, 'hex'),
      expect: Buffer.from(r.written, 'hex'),
    }));
  return { redirects, writes, restores, uncovered, pairs, unpaired };
}

/** Extends `b` to `len` bytes with the original code that follows it. */
function pad(b: Buffer, original: Buffer, len: number): Buffer {
  if (b.length >= len) return b;
  const out = Buffer.alloc(len);
  b.copy(out);
  const tail = original.subarray(b.length, len);
  tail.copy(out, b.length);
  return out;
}

function mergePairs(previous: Journal['pairs'], step: StepFunctions | undefined): Journal['pairs'] {
  const out = [...previous];
  const seen = new Set(previous.map((p) => `${fnKey(p.a)}|${fnKey(p.b)}`));
  for (const p of step?.pairs ?? []) {
    const a: Fn = {
      build: step!.fromBuildId,
      start: p.from.start,
      end: p.from.end,
      ...(p.name ? { name: p.name } : {}),
    };
    const b: Fn = {
      build: step!.toBuildId,
      start: p.to.start,
      end: p.to.end,
      ...(p.name ? { name: p.name } : {}),
    };
    if (seen.has(`${fnKey(a)}|${fnKey(b)}`) || seen.has(`${fnKey(b)}|${fnKey(a)}`)) continue;
    seen.add(`${fnKey(a)}|${fnKey(b)}`);
    out.push({ a, b });
  }
  return out;
}

function mergeUnpaired(previous: Journal['unpaired'], step: StepFunctions | undefined): Journal['unpaired'] {
  const out = [...previous];
  const seen = new Set(previous.map(fnKey));
  for (const u of step?.unpaired ?? []) {
    const f: Fn = {
      build: step!.fromBuildId,
      start: u.start,
      end: u.end,
      ...(u.name ? { name: u.name } : {}),
    };
    if (!seen.has(fnKey(f))) {
      seen.add(fnKey(f));
      out.push(f);
    }
  }
  return out;
}
