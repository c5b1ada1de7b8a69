#!/usr/bin/env bash
# Build the real-library fixtures for the python3 + libexpat acceptance test.
#
#   scripts/real-libs/build-expat.sh [--no-host-check] [--force] [CACHE_DIR]
#
# CACHE_DIR defaults to test/fixtures/real/build (git-ignored).  Produces, in
# CACHE_DIR/expat/:
#   libexpat-rebuild.so.1.8.10  Debian's 2.5.0-1+deb12u1 rebuilt from source with
#                               Debian's flags: the same bytes as the installed
#                               library in every loaded section but the build-id
#   libexpat-visible.so.1.8.10  the same plus expat-visible.patch: XML_ErrorString
#                               says "mismatched tag [ulp visible build]" (code and
#                               .rodata only; writable layout identical)
#   libexpat-deb12u2.so.1.8.10  Debian's own 2.5.0-1+deb12u2 build, whose writable
#                               layout differs (the real-world incompatible pair)
#   ld/{rebuild,visible,deb12u2}/libexpat.so.1   folders for LD_LIBRARY_PATH
#   compare-*.txt               compare-layout.py reports against the installed library
#   products.env, products.json the paths below
# and prints KEY='value' lines (products.env) on stdout; progress goes to stderr.
#
# Exit codes: 0 ok; 1 failure (checksum, patch, build, layout mismatch);
# 64 usage; 77 cannot run here (no network to the Debian archive, missing tool,
# installed libexpat is not the build-id these fixtures target; the reason is
# the last line on stderr).  See docs/REAL-LIBRARIES.md.
set -euo pipefail

PROG=build-expat
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

HOST_CHECK=1
FORCE=0
CACHE=""
while [ $# -gt 0 ]; do
  case $1 in
    --no-host-check) HOST_CHECK=0 ;;
    --force) FORCE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) printf '%s: unknown option %s\n' "$PROG" "$1" >&2; exit 64 ;;
    *) [ -z "$CACHE" ] || { printf '%s: one CACHE_DIR only\n' "$PROG" >&2; exit 64; }; CACHE=$1 ;;
  esac
  shift
done
CACHE=${CACHE:-$REPO/test/fixtures/real/build}

# --- what we build --------------------------------------------------------------
UPSTREAM=2.5.0
SOVER=1.8.10
TARGET_VERSION=2.5.0-1+deb12u1                          # the installed package
TARGET_BUILD_ID=a2f37366bc9782b9306773fd6318838fbae5ad5d  # its libexpat.so.1.8.10
ORIG=expat_${UPSTREAM}.orig.tar.gz
ORIG_SHA256=ab00ee05c7067fd10a35c5d2a4922ebba746ddd50ff83b79c828da17bbdf1757
# Source packages that carry deb12u1's patches, best first, with pinned .dsc
# hashes: deb12u1 itself (still in the security archive's pool), then deb12u2
# (main pool), whose series is deb12u1's five patches plus three more.
SOURCES=(
  "debian-security/pool/updates/main/e/expat/expat_2.5.0-1+deb12u1.dsc 6507e647ff25e88be44b413089b357b4a837a461f11353dd38d7686e3e5733a4"
  "debian/pool/main/e/expat/expat_2.5.0-1+deb12u2.dsc 6fc87dbd01f49999ed368cfb37c08d35e41348dda2281d60642f3aa14cb77e32"
)
# debian/patches/series of 2.5.0-1+deb12u1, in order, with the patches' hashes
# (identical in the deb12u1 and deb12u2 source packages).
U1_PATCHES=(
  "fix-expat-noconfig.patch 860db1f508d6fab88757b5ea8061cb3591afbfc9061f8ebcbbcaccebf3cd96ec"
  "fix-expat-cmake.patch 1ba3a74260bff63129039ad5f31d6cde238b8b1b8a73fac894c062c5bc17d62c"
  "CVE-2024-45490.patch db292e7a287d2f20baca59351af4a6a3a427ab954c7915f8b439f4a67fa3a143"
  "CVE-2024-45491.patch 18301a1dce8d034aa4064ed8f5769a5f49559739abe95f7edbf116664126b086"
  "CVE-2024-45492.patch 214566c829c303cac0261e16dc502be516d5989bdd5674d7c09149ec240c65e1"
)
U2_VERSION=2.5.0-1+deb12u2
U2_DEB_POOL=debian/pool/main/e/expat/libexpat1_2.5.0-1+deb12u2_amd64.deb
U2_DEB_SHA256=2255e62fc22a86d2c544b8a3f516da9aee19383ad5742722ab4ce7f66a30dbc8
VISIBLE_PATCH=$HERE/expat-visible.patch
STOCK_TEXT="mismatched tag"
VISIBLE_TEXT="mismatched tag [ulp visible build]"

# Debian bookworm's build flags (dpkg 1.21 defaults, what `dpkg-buildflags`
# prints there), as debian/rules uses them: CFLAGS += -Wall, LDFLAGS =
# -Wl,-Bsymbolic-functions + dpkg's.  FILE_PREFIX_MAP is the source root.
deb_cflags() { echo "-g -O2 -ffile-prefix-map=$1=. -fstack-protector-strong -Wformat -Werror=format-security"; }
DEB_CPPFLAGS="-Wdate-time -D_FORTIFY_SOURCE=2"
DEB_LDFLAGS="-Wl,-z,relro"
# What expat's configure.ac adds with gcc (AM_CFLAGS, AM_CPPFLAGS), in its order.
AM_CFLAGS="-Wall -Wextra -fexceptions -fno-strict-aliasing -Wmissing-prototypes -Wstrict-prototypes -pedantic -Wduplicated-cond -Wduplicated-branches -Wlogical-op -Wrestrict -Wnull-dereference -Wjump-misses-init -Wdouble-promotion -Wshadow -Wformat=2 -Wno-pedantic-ms-format -Wmisleading-indentation -fvisibility=hidden"
AM_CPPFLAGS="-DXML_ENABLE_VISIBILITY=1"

# --- preflight --------------------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || cannot_run "x86_64 only (this is $(uname -m))"
need_tools curl tar gzip xz patch gcc ar strip readelf objdump sha256sum python3 awk
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
D=$CACHE/downloads
O=$CACHE/expat
W=$O/work
mkdir -p "$D" "$O"
lock_cache "$CACHE"

INSTALLED=$(readlink -f /lib/x86_64-linux-gnu/libexpat.so.1 2>/dev/null || true)
INSTALLED_BUILD_ID=""
[ -n "$INSTALLED" ] && [ -f "$INSTALLED" ] && INSTALLED_BUILD_ID=$(build_id "$INSTALLED")

# --- sources ----------------------------------------------------------------------
SRC_DSC=""
for entry in "${SOURCES[@]}"; do
  path=${entry% *}; sum=${entry#* }
  rc=0
  fetch_verified "$ULP_DEBIAN_MIRROR/$path" "$D/$(basename "$path")" "$sum" || rc=$?
  if [ "$rc" = 0 ]; then SRC_DSC=$path; break; fi
  log "not in the archive (HTTP error): $ULP_DEBIAN_MIRROR/$path"
done
[ -n "$SRC_DSC" ] || die "none of the expat source packages that carry $TARGET_VERSION's patches is in the archive any more; update SOURCES in $0"
DSC=$D/$(basename "$SRC_DSC")
POOL=$ULP_DEBIAN_MIRROR/$(dirname "$SRC_DSC")
DEBTAR=$(awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && $3 ~ /\.debian\.tar\./ {print $3}' "$DSC")
[ -n "$DEBTAR" ] || die "no debian tarball listed in $DSC"
[ "$(dsc_sha256 "$DSC" "$ORIG")" = "$ORIG_SHA256" ] || die "$DSC does not list $ORIG with the expected sha256"
fetch_verified "$POOL/$ORIG" "$D/$ORIG" "$ORIG_SHA256" || die "$POOL/$ORIG: HTTP error"
fetch_verified "$POOL/$DEBTAR" "$D/$DEBTAR" "$(dsc_sha256 "$DSC" "$DEBTAR")" || die "$POOL/$DEBTAR: HTTP error"
log "source: $(basename "$DSC") (+ $ORIG, $DEBTAR; sha256 checked against the .dsc)"

# Debian's deb12u2 binary, the incompatible real-world update.
U2_DEB=$D/$(basename "$U2_DEB_POOL")
get_deb libexpat1 "$U2_VERSION" "$U2_DEB_POOL" "$U2_DEB_SHA256" "$U2_DEB"

# --- build ------------------------------------------------------------------------
STAMP_INPUT=$(
  cat "$0" "$HERE/lib.sh" "$VISIBLE_PATCH" | sha256sum | cut -d' ' -f1
  basename "$DSC"
  gcc --version | head -n1
  ld --version | head -n1
)
STAMP=$(printf '%s\n' "$STAMP_INPUT" | sha256sum | cut -d' ' -f1)
REBUILD=$O/libexpat-rebuild.so.$SOVER
VISIBLE=$O/libexpat-visible.so.$SOVER
DEB12U2=$O/libexpat-deb12u2.so.$SOVER

write_config_h() {
  # expat_config.h as configure writes it on Debian bookworm amd64 (identical to
  # /usr/include/x86_64-linux-gnu/expat_config.h of libexpat1-dev 2.5.0-1+deb12u1,
  # comments dropped).
  cat > "$1" <<'EOF'
#ifndef EXPAT_CONFIG_H
#define EXPAT_CONFIG_H 1
#define BYTEORDER 1234
#define HAVE_ARC4RANDOM_BUF 1
#define HAVE_DLFCN_H 1
#define HAVE_FCNTL_H 1
#define HAVE_GETPAGESIZE 1
#define HAVE_GETRANDOM 1
#define HAVE_INTTYPES_H 1
#define HAVE_MMAP 1
#define HAVE_STDINT_H 1
#define HAVE_STDIO_H 1
#define HAVE_STDLIB_H 1
#define HAVE_STRINGS_H 1
#define HAVE_STRING_H 1
#define HAVE_SYSCALL_GETRANDOM 1
#define HAVE_SYS_PARAM_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_UNISTD_H 1
#define LT_OBJDIR ".libs/"
#define PACKAGE "expat"
#define PACKAGE_BUGREPORT "expat-bugs@libexpat.org"
#define PACKAGE_NAME "expat"
#define PACKAGE_STRING "expat 2.5.0"
#define PACKAGE_TARNAME "expat"
#define PACKAGE_URL ""
#define PACKAGE_VERSION "2.5.0"
#define STDC_HEADERS 1
#define VERSION "2.5.0"
#define XML_CONTEXT_BYTES 1024
#define XML_DEV_URANDOM 1
#define XML_DTD 1
#define XML_NS 1
#endif
EOF
}

# prepare_source: orig + debian/ + deb12u1's patch series, in $W/source
prepare_source() {
  rm -rf "$W"
  mkdir -p "$W/source"
  # only expat/ (the rest of the git snapshot is test data, 80 MB unpacked;
  # deb12u1's patches touch nothing else)
  tar -xzf "$D/$ORIG" -C "$W/source" --strip-components=1 --wildcards '*/expat/*'
  tar -xJf "$D/$DEBTAR" -C "$W/source"
  local series=$W/source/debian/patches/series i=0 entry name sum
  for entry in "${U1_PATCHES[@]}"; do
    name=${entry% *}; sum=${entry#* }
    i=$((i + 1))
    [ "$(grep -v '^\s*#' "$series" | sed -n "${i}p")" = "$name" ] ||
      die "debian/patches/series of $(basename "$DSC") does not start with $TARGET_VERSION's series (entry $i should be $name)"
    [ "$(sha256_of "$W/source/debian/patches/$name")" = "$sum" ] ||
      die "debian/patches/$name of $(basename "$DSC") is not $TARGET_VERSION's"
    patch -d "$W/source" -p1 -s -N --no-backup-if-mismatch < "$W/source/debian/patches/$name" ||
      die "applying $name failed"
  done
  log "applied $TARGET_VERSION's series: $(for e in "${U1_PATCHES[@]}"; do printf '%s ' "${e% *}"; done)"
  if [ "$(grep -cv '^\s*$' "$series")" -gt "$i" ]; then
    log "left out (came after $TARGET_VERSION): $(grep -v '^\s*$' "$series" | sed -n "$((i + 1)),\$p" | tr '\n' ' ')"
  fi
}

# build_variant NAME [PATCH]: one libexpat.so.1.8.10 the way debian/rules +
# libtool build it: sources copied to ROOT/src, compiled in ROOT/build/lib with
# paths ../../src/lib/*.c (they end up in assert() strings), PIC objects in a
# convenience archive linked --whole-archive.
build_variant() {
  local name=$1 extra=${2:-} R=$W/$1
  rm -rf "$R"
  mkdir -p "$R/src" "$R/build/lib/.libs"
  cp -a "$W/source/expat/." "$R/src/"
  if [ -n "$extra" ]; then
    patch -d "$R/src" -p1 -s -N --no-backup-if-mismatch < "$extra" || die "applying $(basename "$extra") failed"
  fi
  write_config_h "$R/build/expat_config.h"
  local cflags f
  cflags="$(deb_cflags "$R") -Wall"
  (
    cd "$R/build/lib"
    for f in xmlparse xmltok xmlrole; do
      # shellcheck disable=SC2086
      gcc -DHAVE_CONFIG_H -I. -I../../src/lib -I.. $AM_CPPFLAGS $DEB_CPPFLAGS $AM_CFLAGS $cflags \
        -c "../../src/lib/$f.c" -fPIC -DPIC -o ".libs/$f.o"
    done
    ar cr .libs/libexpatinternal.a .libs/xmlparse.o .libs/xmltok.o .libs/xmlrole.o
    # shellcheck disable=SC2086
    gcc -shared -fPIC -DPIC -Wl,--whole-archive ./.libs/libexpatinternal.a -Wl,--no-whole-archive \
      -g -O2 -fstack-protector-strong -Wl,-Bsymbolic-functions $DEB_LDFLAGS \
      -Wl,-soname -Wl,libexpat.so.1 -o ".libs/libexpat.so.$SOVER"
  ) > "$R/build.log" 2>&1 || { cat "$R/build.log" >&2; die "building the $name variant failed (log: $R/build.log)"; }
}

if [ "$FORCE" = 0 ] && [ -f "$O/stamp" ] && [ "$(cat "$O/stamp")" = "$STAMP" ] &&
   [ -f "$REBUILD" ] && [ -f "$VISIBLE" ] && [ -f "$DEB12U2" ]; then
  log "cached build is up to date ($O)"
else
  rm -f "$O/stamp"
  start=$(date +%s)
  prepare_source
  if command -v dpkg-buildflags >/dev/null 2>&1; then
    local_flags=$(cd "$W/source" && env -i PATH="$PATH" dpkg-buildflags --get CFLAGS)
    if [ "$local_flags" = "$(deb_cflags "$W/source")" ]; then
      log "dpkg-buildflags on this machine agrees with the flags used"
    else
      log "note: dpkg-buildflags here says '$local_flags'; using bookworm's defaults '$(deb_cflags "$W/source")', which built the installed package"
    fi
  fi
  build_variant rebuild &
  p1=$!
  build_variant visible "$VISIBLE_PATCH" &
  p2=$!
  rc=0
  wait "$p1" || rc=1
  wait "$p2" || rc=1
  [ "$rc" = 0 ] || die "build failed"
  debian_strip "$W/rebuild/build/lib/.libs/libexpat.so.$SOVER" "$REBUILD"
  debian_strip "$W/visible/build/lib/.libs/libexpat.so.$SOVER" "$VISIBLE"
  deb_extract "$U2_DEB" "$W/deb12u2"
  cp -f "$W/deb12u2/lib/x86_64-linux-gnu/libexpat.so.$SOVER" "$DEB12U2"
  grep -qaF "$VISIBLE_TEXT" "$VISIBLE" || die "the visible build does not contain '$VISIBLE_TEXT'"
  if grep -qaF "$VISIBLE_TEXT" "$REBUILD"; then die "the rebuild contains the visible change"; fi
  for v in rebuild visible deb12u2; do
    mkdir -p "$O/ld/$v"
    ln -sfn "../../libexpat-$v.so.$SOVER" "$O/ld/$v/libexpat.so.1"
  done
  printf '%s\n' "$STAMP" > "$O/stamp"
  log "built in $(( $(date +%s) - start ))s"
fi

# --- products ---------------------------------------------------------------------
{
  printf "EXPAT_INSTALLED='%s'\n" "$INSTALLED"
  printf "EXPAT_INSTALLED_BUILD_ID='%s'\n" "$INSTALLED_BUILD_ID"
  printf "EXPAT_TARGET_BUILD_ID='%s'\n" "$TARGET_BUILD_ID"
  printf "EXPAT_REBUILD='%s'\n" "$REBUILD"
  printf "EXPAT_REBUILD_BUILD_ID='%s'\n" "$(build_id "$REBUILD")"
  printf "EXPAT_VISIBLE='%s'\n" "$VISIBLE"
  printf "EXPAT_VISIBLE_BUILD_ID='%s'\n" "$(build_id "$VISIBLE")"
  printf "EXPAT_DEB12U2='%s'\n" "$DEB12U2"
  printf "EXPAT_DEB12U2_BUILD_ID='%s'\n" "$(build_id "$DEB12U2")"
  printf "EXPAT_LD_REBUILD='%s'\n" "$O/ld/rebuild"
  printf "EXPAT_LD_VISIBLE='%s'\n" "$O/ld/visible"
  printf "EXPAT_LD_DEB12U2='%s'\n" "$O/ld/deb12u2"
  printf "EXPAT_STOCK_TEXT='%s'\n" "$STOCK_TEXT"
  printf "EXPAT_VISIBLE_TEXT='%s'\n" "$VISIBLE_TEXT"
  printf "EXPAT_SOURCE='%s'\n" "$(basename "$DSC")"
} > "$O/products.env"
python3 - "$O/products.env" "$O/products.json" <<'EOF'
import json, sys
out = {}
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("=", 1)
    out[k] = v[1:-1]
json.dump(out, open(sys.argv[2], "w"), indent=2)
EOF

# --- checks against the installed library -------------------------------------------
if [ "$HOST_CHECK" = 1 ]; then
  [ -n "$INSTALLED" ] && [ -f "$INSTALLED" ] ||
    { cat "$O/products.env"; cannot_run "no /lib/x86_64-linux-gnu/libexpat.so.1 on this machine (products built in $O)"; }
  if [ "$INSTALLED_BUILD_ID" != "$TARGET_BUILD_ID" ]; then
    cat "$O/products.env"
    cannot_run "the installed libexpat ($INSTALLED, build-id ${INSTALLED_BUILD_ID:-none}) is not Debian's $TARGET_VERSION (build-id $TARGET_BUILD_ID); the fixtures in $O target that build"
  fi
  for v in rebuild visible deb12u2; do
    rc=0
    python3 "$HERE/compare-layout.py" "$INSTALLED" "$O/libexpat-$v.so.$SOVER" > "$O/compare-$v.txt" 2>&1 || rc=$?
    case $v:$rc in
      rebuild:0|visible:0) log "$v: writable layout, TLS, init code and symbols match the installed library ($O/compare-$v.txt)" ;;
      deb12u2:1) log "deb12u2: incompatible with the installed library, as expected ($O/compare-$v.txt)" ;;
      deb12u2:0) log "warning: deb12u2 now looks compatible with the installed library ($O/compare-$v.txt)" ;;
      *) cat "$O/compare-$v.txt" >&2; die "$v does not match the installed library (report: $O/compare-$v.txt)" ;;
    esac
  done
fi

cat "$O/products.env"
