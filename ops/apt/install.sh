#!/bin/sh
# Installs ulp's apt hook: the script into LIBDIR (default /usr/local/lib/ulp)
# and the DPkg::Post-Invoke snippet into CONFDIR (default /etc/apt/apt.conf.d).
#   ops/apt/install.sh [--libdir DIR] [--confdir DIR]
#   ops/apt/install.sh --uninstall [--libdir DIR] [--confdir DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
libdir=/usr/local/lib/ulp
confdir=/etc/apt/apt.conf.d
action=install
while [ $# -gt 0 ]; do
  case $1 in
    --libdir) libdir=$2; shift 2 ;;
    --confdir) confdir=$2; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    *) echo "usage: $0 [--uninstall] [--libdir DIR] [--confdir DIR]" >&2; exit 64 ;;
  esac
done
hook=$libdir/ulp-apt-hook
if [ "$action" = uninstall ]; then
  rm -f "$confdir/80ulp-upgrade" "$hook"
  echo "removed $confdir/80ulp-upgrade and $hook"
  exit 0
fi
case $hook in *[!A-Za-z0-9/._-]*) echo "install.sh: $libdir: use a path without spaces or quotes" >&2; exit 64 ;; esac
mkdir -p "$libdir" "$confdir"
install -m 0755 "$here/ulp-apt-hook" "$hook.new" && mv "$hook.new" "$hook"
sed "s#@HOOK@#$hook#g" "$here/80ulp-upgrade" >"$confdir/.80ulp-upgrade.new"
chmod 0644 "$confdir/.80ulp-upgrade.new" && mv "$confdir/.80ulp-upgrade.new" "$confdir/80ulp-upgrade"
echo "installed $hook and $confdir/80ulp-upgrade"
