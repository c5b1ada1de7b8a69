# Shared helpers for scripts/real-libs/build-*.sh (sourced, bash).
#
# Exit codes of the build scripts:
#   0   products built (or already cached) and checked against the installed library
#   1   a real failure: checksum mismatch, patch or build failure, the rebuild's
#       writable layout does not match the installed library, archive file gone
#   64  usage
#   77  cannot run here: no network to the Debian archive, a missing tool, or the
#       installed library is not the build these fixtures target.  Tests skip
#       visibly on 77 and print the script's last stderr line.

EXIT_CANNOT_RUN=77

: "${ULP_DEBIAN_MIRROR:=http://deb.debian.org}"
ULP_DEBIAN_MIRROR=${ULP_DEBIAN_MIRROR%/}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
cannot_run() { printf '%s: cannot run here: %s\n' "$PROG" "$*" >&2; exit "$EXIT_CANNOT_RUN"; }

need_tools() {
  local t missing=""
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
  done
  [ -z "$missing" ] || cannot_run "missing tool(s):$missing"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

ARCHIVE_PROBE_URL=$ULP_DEBIAN_MIRROR/debian/dists/bookworm/InRelease
ARCHIVE_OK=""

no_archive() {
  cannot_run "network unreachable: $1. These fixtures need the Debian archive ($ULP_DEBIAN_MIRROR; set ULP_DEBIAN_MIRROR for another mirror)"
}

# archive_reachable: does the mirror serve a file it must have?  An HTTP error
# on a pool file only means "gone from the archive" when this succeeds (some
# networks answer every blocked request with an HTTP error of their own).
archive_reachable() {
  if [ -z "$ARCHIVE_OK" ]; then
    if curl -s -f -I -L --connect-timeout 15 --max-time 60 -o /dev/null "$ARCHIVE_PROBE_URL"; then
      ARCHIVE_OK=yes
    else
      ARCHIVE_OK=no
    fi
  fi
  [ "$ARCHIVE_OK" = yes ]
}

# fetch URL DEST: download to DEST (atomically).  Returns 0 on success, 22 when
# the archive answered that the file is not there; exits 77 when the archive
# cannot be reached at all.
fetch() {
  local url=$1 dest=$2 rc=0 err
  err=$(curl -sS -f -L --connect-timeout 15 --max-time 600 --retry 2 -o "$dest.part" "$url" 2>&1) || rc=$?
  err=${err##*$'\n'}
  case $rc in
    0) mv -f "$dest.part" "$dest"; ARCHIVE_OK=yes; return 0 ;;
    22)
      rm -f "$dest.part"
      archive_reachable || no_archive "$url: ${err#curl: }; $ARCHIVE_PROBE_URL is not served either"
      return 22 ;;
    5|6|7|28|35|52|55|56)
      rm -f "$dest.part"
      no_archive "cannot download $url: ${err#curl: }" ;;
    *) rm -f "$dest.part"; die "downloading $url failed: ${err#curl: }" ;;
  esac
}

# fetch_verified URL DEST SHA256: cached download, checked against SHA256.
fetch_verified() {
  local url=$1 dest=$2 want=$3 rc=0
  if [ -f "$dest" ] && [ "$(sha256_of "$dest")" = "$want" ]; then
    return 0
  fi
  fetch "$url" "$dest" || rc=$?
  [ "$rc" = 0 ] || return "$rc"
  local got
  got=$(sha256_of "$dest")
  if [ "$got" != "$want" ]; then
    mv -f "$dest" "$dest.bad"
    die "sha256 mismatch for $url: expected $want, got $got (kept as $dest.bad)"
  fi
}

# dsc_sha256 DSC FILE: the Checksums-Sha256 entry of FILE in a .dsc
dsc_sha256() {
  awk -v f="$2" '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && $3 == f {print $1}' "$1"
}

# build_id FILE: the GNU build-id of an ELF file, empty when none
build_id() {
  readelf -n "$1" 2>/dev/null | awk '/Build ID:/ {print $3; exit}'
}

# get_deb PACKAGE VERSION POOLPATH SHA256 DEST: a binary package, through
# `apt-get download` when apt knows that version, else straight from the pool;
# either way checked against the pinned SHA256.
get_deb() {
  local pkg=$1 ver=$2 pool=$3 want=$4 dest=$5 tmp f
  if [ -f "$dest" ] && [ "$(sha256_of "$dest")" = "$want" ]; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    # apt drops root privileges to _apt for downloads: give it a folder it can write.
    tmp=$(mktemp -d)
    chmod 0777 "$tmp"
    if (cd "$tmp" && apt-get download -q=2 "$pkg=$ver" >/dev/null 2>&1); then
      f=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
      if [ -n "$f" ] && [ "$(sha256_of "$f")" = "$want" ]; then
        mv -f "$f" "$dest"
        rm -rf "$tmp"
        log "got $pkg $ver through apt-get download"
        return 0
      fi
      log "apt-get download gave a different file for $pkg $ver; trying the pool"
    fi
    rm -rf "$tmp"
  fi
  local rc=0
  fetch_verified "$ULP_DEBIAN_MIRROR/$pool" "$dest" "$want" || rc=$?
  [ "$rc" = 0 ] || die "$pkg $ver is neither known to apt nor in the pool ($ULP_DEBIAN_MIRROR/$pool, HTTP error)"
  log "got $pkg $ver from $ULP_DEBIAN_MIRROR/$pool"
}

# deb_extract DEB DIR
deb_extract() {
  rm -rf "$2"
  mkdir -p "$2"
  if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb -x "$1" "$2"
  else
    local tmp member
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$1")
    member=$(ls "$tmp"/data.tar.* | head -n1)
    tar -xf "$member" -C "$2"
    rm -rf "$tmp"
  fi
}

# debian_strip IN OUT: what dh_strip does to a shared library in Debian
# (--strip-unneeded, no .comment/.note), without adding a .gnu_debuglink.
debian_strip() {
  strip --remove-section=.comment --remove-section=.note --strip-unneeded -o "$2" "$1"
}

# lock DIR: serialise concurrent runs on one cache folder
lock_cache() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$1/.lock"
    flock 9
  fi
}
