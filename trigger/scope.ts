/**
 * `--all`'s scope: which processes an operator lets it consider (`--pid`,
 * `--exclude`, `--user`, `--comm`, `--unit`), decided from what /proc says
 * about each process. Pure: the /proc texts are read in all.ts.
 *
 * The flags AND together and each is an OR of its values, so
 * `--unit nginx --user www-data --user 33` is "nginx's processes running as
 * www-data". A fact that cannot be read (the process exited, /proc hides it)
 * matches no filter that asks for it: a scoped run never widens by accident.
 */

/** The kernel keeps a command name to 15 bytes (TASK_COMM_LEN - 1): a longer --comm could never match. */
export const COMM_MAX = 15;

/** What the scope is decided on; `undefined` where /proc did not say. */
export interface ProcessFacts {
  pid: number;
  comm: string | undefined;
  /** Real uid (the first of status's Uid line): who started it, not a setuid program's effective user. */
  uid: number | undefined;
  /** The systemd unit whose cgroup holds it (`nginx.service`, `session-3.scope`). */
  unit: string | undefined;
}

export interface Scope {
  exclude: readonly number[];
  uids: readonly number[];
  comms: readonly string[];
  /** Full unit names (with their suffix): unitName() of what was given. */
  units: readonly string[];
}

export const EMPTY_SCOPE: Scope = { exclude: [], uids: [], comms: [], units: [] };

/** Unit types whose cgroups hold processes, and the others a name may be given with. */
const UNIT_SUFFIX = /\.(service|scope|socket|mount|swap|slice|target|timer|path|device|automount)$/;

/** Whether the scope needs more than the pid (so /proc/PID/status, comm or cgroup must be read before the maps). */
export function needsFacts(s: Scope): boolean {
  return s.uids.length > 0 || s.comms.length > 0 || s.units.length > 0;
}

export function inScope(f: ProcessFacts, s: Scope): boolean {
  if (s.exclude.includes(f.pid)) return false;
  if (s.uids.length && (f.uid === undefined || !s.uids.includes(f.uid))) return false;
  if (s.comms.length && (f.comm === undefined || !s.comms.includes(f.comm))) return false;
  if (s.units.length && (f.unit === undefined || !s.units.includes(f.unit))) return false;
  return true;
}

/** The real uid from /proc/PID/status text. */
export function realUid(statusText: string): number | undefined {
  const m = /^Uid:\s+(\d+)/m.exec(statusText);
  return m ? Number(m[1]) : undefined;
}

/**
 * The systemd unit from /proc/PID/cgroup text: the last component of the
 * cgroup path that names a unit, so a service that delegates sub-cgroups
 * (`/system.slice/x.service/payload`) is still `x.service`, and a user
 * service (`…/user@1000.service/app.slice/y.service`) is `y.service`. The
 * unified hierarchy's line (`0::`) is read first, then the named systemd
 * hierarchy of cgroup v1 (`name=systemd`); a slice is no answer, since it
 * only holds units.
 */
export function unitOf(cgroupText: string): string | undefined {
  const paths = new Map<string, string>();
  for (const line of cgroupText.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) paths.set(m[1]!, m[2]!);
  }
  for (const key of ['', 'name=systemd']) {
    const path = paths.get(key);
    if (path === undefined) continue;
    const unit = path
      .split('/')
      .filter((c) => UNIT_SUFFIX.test(c) && !c.endsWith('.slice'))
      .at(-1);
    if (unit) return unit;
  }
  return undefined;
}

/** `nginx` means `nginx.service`, as in systemctl; a name with a unit type's suffix is taken as it is. */
export function unitName(arg: string): string {
  return UNIT_SUFFIX.test(arg) ? arg : `${arg}.service`;
}

/** User name to uid from /etc/passwd text (the first entry of a name wins, as getpwnam's file lookup does). */
export function parsePasswd(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid !== undefined && /^\d+$/.test(uid) && !out.has(name)) out.set(name, Number(uid));
  }
  return out;
}

/** `--user`'s value: a uid as it is, else a name from `users`; undefined for an unknown name. */
export function resolveUser(arg: string, users: ReadonlyMap<string, number>): number | undefined {
  if (/^\d+$/.test(arg)) return Number(arg);
  return users.get(arg);
}

/** The name of a uid for the listing, or the number when the passwd file has none. */
export function userName(uid: number | undefined, users: ReadonlyMap<string, number>): string | undefined {
  if (uid === undefined) return undefined;
  for (const [name, id] of users) if (id === uid) return name;
  return String(uid);
}
