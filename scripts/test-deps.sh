#!/bin/sh
# Runs before `npm test` (the pretest script): installs the Debian packages
# the suite needs that a fresh machine of this kind lacks:
#   ansible-core  test/ops (the rollout playbook, run against localhost)
#   nginx-light   test/system/trigger/nginx.test.ts (a forking server patched under load)
#   strace        test/integration/trigger/cli-small.test.ts (--status of a process another tracer holds)
#   needrestart   test/system/trigger/upgrade.test.ts (what stock needrestart reports after the apt hook patched)
# Everything else the tests use (gcc, g++, binutils, python3, util-linux, and
# dpkg-deb and apt-get for the upgrade tests) comes with the machine. The packages' services are not started.
set -eu
missing=""
command -v ansible-playbook >/dev/null 2>&1 || missing="$missing ansible-core"
[ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
[ -x /usr/sbin/needrestart ] || missing="$missing needrestart"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing$missing with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A policy-rc.d that refuses keeps nginx's package from starting its service on port 80.
  policy=/usr/sbin/policy-rc.d
  ours=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1; fi
  install() { apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
  status=0
  install || { apt-get update -qq >/dev/null && install; } || status=$?
  [ -n "$ours" ] && rm -f "$policy"
  exit $status
else
  echo "test-deps: missing$missing and this user cannot install them; the tests that need them will fail." >&2
  echo "test-deps: install them with: sudo apt-get install --no-install-recommends$missing" >&2
fi
