#!/usr/bin/env bash
# Fetch Debian bookworm's libpcre2-8 before and after its only security update,
# for the nginx evidence (test/system/trigger/nginx-tls.test.ts).
#
#   scripts/real-libs/fetch-pcre2.sh [CACHE_DIR]
#
# CACHE_DIR defaults to test/fixtures/real/build (git-ignored).  Produces, in
# CACHE_DIR/pcre2/:
#   10.42-1/libpcre2-8.so.0.11.2           bookworm's release build
#   10.42-1+deb12u2/libpcre2-8.so.0.11.2   the security update (deb12u1's eight
#                                          fixes from 10.48 + a JIT stack fix)
# unmodified, from the packages (sha256 pinned below), and prints KEY='value'
# lines on stdout.  Nothing is built: two .deb downloads of ~260 kB each.
#
# Why this pair: the JIT compiler's per-call state (`compiler_common`, zeroed
# on jit_compile's stack) gained a field: six functions of the JIT compiler
# access its fields from 0xc4 on 4 bytes further (LAYOUT_FIELD_MOVED). The
# structure lives only on jit_compile's stack, so ulp-pack accepts the update
# on the condition that no thread is inside jit_compile at the switch
# (LAYOUT_STACK_CONFINED, docs/COMPATIBILITY.md); the test applies it to nginx.
#
# Exit codes: 0 ok; 1 failure (checksum); 64 usage; 77 cannot run here (no
# network to the Debian archive, a missing tool; the reason is the last line
# on stderr).
set -euo pipefail

PROG=fetch-pcre2
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

CACHE=""
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) printf '%s: unknown option %s\n' "$PROG" "$1" >&2; exit 64 ;;
    *) [ -z "$CACHE" ] || { printf '%s: one CACHE_DIR only\n' "$PROG" >&2; exit 64; }; CACHE=$1 ;;
  esac
  shift
done
CACHE=${CACHE:-$REPO/test/fixtures/real/build}

FILE=usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2
# version  pool path  sha256 of the .deb  build-id of the library in it
DEBS=(
  "10.42-1 debian/pool/main/p/pcre2/libpcre2-8-0_10.42-1_amd64.deb 030db54f4d76cdfe2bf0e8eb5f9efea0233ab3c7aa942d672c7b63b52dbaf935 fbc37bf891c814600cbe68abb040c56b949f321e"
  "10.42-1+deb12u2 debian-security/pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1+deb12u2_amd64.deb d2f7edfcc7689b9e0761c2742cc824ac86a20768bc5e8057818dc6875291fe76 80008c19cf49e3f09f312e74d164938e91d9337d"
)

[ "$(uname -m)" = x86_64 ] || cannot_run "x86_64 only (this is $(uname -m))"
need_tools curl tar ar readelf sha256sum
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
D=$CACHE/downloads
O=$CACHE/pcre2
mkdir -p "$D" "$O"
lock_cache "$CACHE"

keys=(OLD NEW)
i=0
for entry in "${DEBS[@]}"; do
  read -r ver pool sha id <<< "$entry"
  out=$O/$ver/libpcre2-8.so.0.11.2
  if [ ! -f "$out" ] || [ "$(build_id "$out")" != "$id" ]; then
    deb=$D/$(basename "$pool")
    get_deb libpcre2-8-0 "$ver" "$pool" "$sha" "$deb"
    deb_extract "$deb" "$O/$ver/x"
    mv -f "$O/$ver/x/$FILE" "$out"
    rm -rf "$O/$ver/x"
    [ "$(build_id "$out")" = "$id" ] || die "$out: build-id $(build_id "$out"), expected $id"
  fi
  printf "PCRE2_%s='%s'\n" "${keys[$i]}" "$out"
  printf "PCRE2_%s_VERSION='%s'\n" "${keys[$i]}" "$ver"
  printf "PCRE2_%s_BUILD_ID='%s'\n" "${keys[$i]}" "$id"
  i=$((i + 1))
done
