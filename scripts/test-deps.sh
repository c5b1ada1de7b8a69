#!/bin/sh
# Runs before `npm test` (the pretest script): installs the system packages
# the suite needs that a fresh machine of this kind lacks. Today that is
# ansible-core, for test/ops (the rollout playbook run against localhost).
# Everything else the tests use (gcc, g++, binutils, python3, util-linux)
# comes with the machine.
set -eu
command -v ansible-playbook >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ansible-core (for test/ops) with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  install() { apt-get install -y -qq --no-install-recommends ansible-core >/dev/null; }
  install || { apt-get update -qq >/dev/null && install; }
else
  echo "test-deps: ansible-playbook is missing and this user cannot install it; test/ops will fail." >&2
  echo "test-deps: install it with: sudo apt-get install --no-install-recommends ansible-core" >&2
fi
