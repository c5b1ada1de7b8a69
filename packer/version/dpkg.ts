/**
 * Debian version ordering (deb-version(7)), as dpkg --compare-versions
 * implements it: [epoch:]upstream[-revision], where the epoch compares as a
 * number, and upstream and revision compare by dpkg's verrevcmp: alternating
 * runs of non-digits (letters sort before other characters, `~` before
 * everything, even the end of the string) and digits (as numbers). Pure.
 */

export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

export function parseDebianVersion(text: string): DebianVersion | undefined {
  const v = text.trim();
  if (v === '' || /\s/.test(v)) return undefined;
  const colon = v.indexOf(':');
  let epoch = 0;
  let rest = v;
  if (colon >= 0) {
    const e = v.slice(0, colon);
    if (!/^\d+$/.test(e)) return undefined;
    epoch = Number(e);
    rest = v.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : '';
  if (upstream === '' || !/^[0-9]/.test(upstream)) return undefined;
  if (!/^[A-Za-z0-9.+~:-]+$/.test(upstream) || !/^[A-Za-z0-9.+~]*$/.test(revision)) return undefined;
  return { epoch, upstream, revision };
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isAlpha = (c: string) => (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');

/** dpkg's order(): `~` first, then the end of the string and digits, then letters, then everything else. */
function order(c: string | undefined): number {
  if (c === undefined || isDigit(c)) return 0;
  if (isAlpha(c)) return c.charCodeAt(0);
  if (c === '~') return -1;
  return c.charCodeAt(0) + 256;
}

/** dpkg's verrevcmp: negative, zero or positive. */
export function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ac = order(a[i]);
      const bc = order(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a[i])) return 1;
    if (isDigit(b[j])) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** -1, 0 or 1 as `a` is older than, equal to or newer than `b`; undefined when either is not a Debian version. */
export function compareDebianVersions(a: string, b: string): -1 | 0 | 1 | undefined {
  const x = parseDebianVersion(a);
  const y = parseDebianVersion(b);
  if (!x || !y) return undefined;
  const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);
  if (x.epoch !== y.epoch) return sign(x.epoch - y.epoch);
  return sign(verrevcmp(x.upstream, y.upstream)) || sign(verrevcmp(x.revision, y.revision));
}
