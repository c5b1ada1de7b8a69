#!/usr/bin/env bash
# Build real-library fixtures for zlib, the other library Debian's python3 links.
#
#   scripts/real-libs/build-zlib.sh [--no-host-check] [--force] [CACHE_DIR]
#
# CACHE_DIR defaults to test/fixtures/real/build (git-ignored).  Produces, in
# CACHE_DIR/zlib/:
#   libz-rebuild.so.1.2.13   Debian's 1:1.2.13.dfsg-1 rebuilt from source the way
#                            debian/rules does: the same bytes as the installed
#                            library in every loaded section but the build-id
#   libz-visible.so.1.2.13   the same plus zlib-visible.patch: inflate() reports
#                            "incorrect header check [ulp visible build]"
#   ld/{rebuild,visible}/libz.so.1   folders for LD_LIBRARY_PATH
#   compare-*.txt, products.env, products.json
# and prints KEY='value' lines on stdout.  Exit codes as build-expat.sh:
# 0 ok, 1 failure, 64 usage, 77 cannot run here (reason on the last stderr line).
set -euo pipefail

PROG=build-zlib
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

SOVER=1.2.13
TARGET_VERSION=1:1.2.13.dfsg-1
TARGET_BUILD_ID=1f95d5498d283b79505861523e20b3db2afdf518
DSC_PATH=debian/pool/main/z/zlib/zlib_1.2.13.dfsg-1.dsc
DSC_SHA256=3fa1e6b2fc525062aa88207dda52fed8e045373c809d362fe8a2bfbf7cf515a8
PATCHES=(
  "cflags-for-minizip 82484926d7b19d5a78beac6fd8a2362fc30c569736eceac5be33f96587674008"
  "use-dso-really c89ee3614899cb493f7a665b1f33f6334093b8b8402d1bdcaf62fea3afabf86d"
)
VISIBLE_PATCH=$HERE/zlib-visible.patch
STOCK_TEXT="incorrect header check"
VISIBLE_TEXT="incorrect header check [ulp visible build]"

# debian/rules: CFLAGS = dpkg CFLAGS + dpkg CPPFLAGS -Wall -D_REENTRANT -O3
# -DUNALIGNED_OK (amd64), LDFLAGS = dpkg LDFLAGS; bookworm's dpkg defaults.
deb_cflags() {
  echo "-g -O2 -ffile-prefix-map=$1=. -fstack-protector-strong -Wformat -Werror=format-security -Wdate-time -D_FORTIFY_SOURCE=2 -Wall -D_REENTRANT -O3 -DUNALIGNED_OK"
}
DEB_LDFLAGS="-Wl,-z,relro"

[ "$(uname -m)" = x86_64 ] || cannot_run "x86_64 only (this is $(uname -m))"
need_tools curl tar bzip2 xz patch gcc make ar strip readelf objdump sha256sum python3 awk
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
D=$CACHE/downloads
O=$CACHE/zlib
W=$O/work
mkdir -p "$D" "$O"
lock_cache "$CACHE"

INSTALLED=$(readlink -f /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null || true)
INSTALLED_BUILD_ID=""
[ -n "$INSTALLED" ] && [ -f "$INSTALLED" ] && INSTALLED_BUILD_ID=$(build_id "$INSTALLED")

DSC=$D/$(basename "$DSC_PATH")
POOL=$ULP_DEBIAN_MIRROR/$(dirname "$DSC_PATH")
fetch_verified "$ULP_DEBIAN_MIRROR/$DSC_PATH" "$DSC" "$DSC_SHA256" ||
  die "$ULP_DEBIAN_MIRROR/$DSC_PATH is not in the archive any more; update $0"
for f in $(awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on {print $3}' "$DSC"); do
  fetch_verified "$POOL/$f" "$D/$f" "$(dsc_sha256 "$DSC" "$f")" || die "$POOL/$f: HTTP error"
done
ORIG=$(awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && $3 ~ /\.orig\.tar\./ {print $3}' "$DSC")
DEBTAR=$(awk '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0} on && $3 ~ /\.debian\.tar\./ {print $3}' "$DSC")
log "source: $(basename "$DSC") (+ $ORIG, $DEBTAR; sha256 checked against the .dsc)"

STAMP=$(
  {
    cat "$0" "$HERE/lib.sh" "$VISIBLE_PATCH" | sha256sum
    basename "$DSC"
    gcc --version | head -n1
    ld --version | head -n1
  } | sha256sum | cut -d' ' -f1
)
REBUILD=$O/libz-rebuild.so.$SOVER
VISIBLE=$O/libz-visible.so.$SOVER
CC_NAME=x86_64-linux-gnu-gcc
command -v "$CC_NAME" >/dev/null 2>&1 || CC_NAME=gcc

# build_variant NAME [PATCH]: debian/rules' configure-stamp + the shared library
# target of `make`, in the source root (which -ffile-prefix-map maps to ".").
build_variant() {
  local name=$1 extra=${2:-} R=$W/$1 entry
  rm -rf "$R"
  mkdir -p "$R"
  tar -xjf "$D/$ORIG" -C "$R" --strip-components=1
  tar -xJf "$D/$DEBTAR" -C "$R"
  for entry in "${PATCHES[@]}"; do
    [ "$(sha256_of "$R/debian/patches/${entry% *}")" = "${entry#* }" ] || die "debian/patches/${entry% *} is not $TARGET_VERSION's"
    patch -d "$R" -p1 -s -N --no-backup-if-mismatch < "$R/debian/patches/${entry% *}" || die "applying ${entry% *} failed"
  done
  [ "$(grep -cv '^\s*$' "$R/debian/patches/series")" = "${#PATCHES[@]}" ] || die "debian/patches/series has changed"
  if [ -n "$extra" ]; then
    patch -d "$R" -p1 -s -N --no-backup-if-mismatch < "$extra" || die "applying $(basename "$extra") failed"
  fi
  (
    cd "$R"
    AR=ar CC="$CC_NAME" CFLAGS="$(deb_cflags "$R")" LDFLAGS="$DEB_LDFLAGS" uname=GNU \
      ./configure --shared --prefix=/usr --libdir='${prefix}/lib/x86_64-linux-gnu'
    make "libz.so.$SOVER"
  ) > "$R/build.log" 2>&1 || { cat "$R/build.log" >&2; die "building the $name variant failed (log: $R/build.log)"; }
}

if [ "$FORCE" = 0 ] && [ -f "$O/stamp" ] && [ "$(cat "$O/stamp")" = "$STAMP" ] &&
   [ -f "$REBUILD" ] && [ -f "$VISIBLE" ]; then
  log "cached build is up to date ($O)"
else
  rm -f "$O/stamp"
  rm -rf "$W"
  mkdir -p "$W"
  start=$(date +%s)
  build_variant rebuild &
  p1=$!
  build_variant visible "$VISIBLE_PATCH" &
  p2=$!
  rc=0
  wait "$p1" || rc=1
  wait "$p2" || rc=1
  [ "$rc" = 0 ] || die "build failed"
  debian_strip "$W/rebuild/libz.so.$SOVER" "$REBUILD"
  debian_strip "$W/visible/libz.so.$SOVER" "$VISIBLE"
  grep -qaF "$VISIBLE_TEXT" "$VISIBLE" || die "the visible build does not contain '$VISIBLE_TEXT'"
  if grep -qaF "$VISIBLE_TEXT" "$REBUILD"; then die "the rebuild contains the visible change"; fi
  for v in rebuild visible; do
    mkdir -p "$O/ld/$v"
    ln -sfn "../../libz-$v.so.$SOVER" "$O/ld/$v/libz.so.1"
  done
  printf '%s\n' "$STAMP" > "$O/stamp"
  log "built in $(( $(date +%s) - start ))s"
fi

{
  printf "ZLIB_INSTALLED='%s'\n" "$INSTALLED"
  printf "ZLIB_INSTALLED_BUILD_ID='%s'\n" "$INSTALLED_BUILD_ID"
  printf "ZLIB_TARGET_BUILD_ID='%s'\n" "$TARGET_BUILD_ID"
  printf "ZLIB_REBUILD='%s'\n" "$REBUILD"
  printf "ZLIB_REBUILD_BUILD_ID='%s'\n" "$(build_id "$REBUILD")"
  printf "ZLIB_VISIBLE='%s'\n" "$VISIBLE"
  printf "ZLIB_VISIBLE_BUILD_ID='%s'\n" "$(build_id "$VISIBLE")"
  printf "ZLIB_LD_REBUILD='%s'\n" "$O/ld/rebuild"
  printf "ZLIB_LD_VISIBLE='%s'\n" "$O/ld/visible"
  printf "ZLIB_STOCK_TEXT='%s'\n" "$STOCK_TEXT"
  printf "ZLIB_VISIBLE_TEXT='%s'\n" "$VISIBLE_TEXT"
  printf "ZLIB_SOURCE='%s'\n" "$(basename "$DSC")"
} > "$O/products.env"
python3 - "$O/products.env" "$O/products.json" <<'EOF'
import json, sys
out = {}
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("=", 1)
    out[k] = v[1:-1]
json.dump(out, open(sys.argv[2], "w"), indent=2)
EOF

if [ "$HOST_CHECK" = 1 ]; then
  [ -n "$INSTALLED" ] && [ -f "$INSTALLED" ] ||
    { cat "$O/products.env"; cannot_run "no /lib/x86_64-linux-gnu/libz.so.1 on this machine (products built in $O)"; }
  if [ "$INSTALLED_BUILD_ID" != "$TARGET_BUILD_ID" ]; then
    cat "$O/products.env"
    cannot_run "the installed libz ($INSTALLED, build-id ${INSTALLED_BUILD_ID:-none}) is not Debian's $TARGET_VERSION (build-id $TARGET_BUILD_ID); the fixtures in $O target that build"
  fi
  for v in rebuild visible; do
    rc=0
    python3 "$HERE/compare-layout.py" "$INSTALLED" "$O/libz-$v.so.$SOVER" > "$O/compare-$v.txt" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { cat "$O/compare-$v.txt" >&2; die "$v does not match the installed library (report: $O/compare-$v.txt)"; }
    log "$v: writable layout, TLS, init code and symbols match the installed library ($O/compare-$v.txt)"
  done
fi

cat "$O/products.env"
