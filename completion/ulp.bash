# bash completion for ulp-pack and ulp-trigger.
# Install (see README.md):
#   install -m 644 "$(npm root -g)/ulp/completion/ulp.bash" /etc/bash_completion.d/ulp
# or source it from ~/.bashrc.

_ulp_pids() {
  local pid out=()
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ $pid == "$1"* ]] && out+=("$pid")
  done
  COMPREPLY+=("${out[@]}")
}

_ulp_pack() {
  local cur prev
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  case $prev in
    -o|--output) COMPREPLY=($(compgen -f -X '!*.ulp' -- "$cur") $(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --inspect) COMPREPLY=($(compgen -f -X '!*.ulp' -- "$cur") $(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --sign|--key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --debug-dir) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --known) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --created-at|--package|--from-version|--to-version|--fixes) return ;;
    --pid) _ulp_pids "$cur"; return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W '-o --output --check --json --sign --created-at --debug-dir --package --from-version --to-version --fixes --allow-downgrade --known --pid --deb --inspect --key -V --version -h --help' -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -X '!*.so*' -- "$cur") $(compgen -d -- "$cur"))
  compopt -o filenames 2>/dev/null
}

_ulp_trigger() {
  local cur prev w mode=apply nargs=0
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case $w in
      --all) mode=all ;;
      --status) mode=status ;;
      --outdated) mode=outdated ;;
      --key|--stop-timeout|--jobs|--pid|--bundles-dir|--exclude|--user|--comm|--unit) ;;
      -*) ;;
      *) nargs=$((nargs + 1)) ;;
    esac
  done
  case $prev in
    --key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --bundles-dir) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --stop-timeout|--jobs) return ;;
    --pid|--exclude) _ulp_pids "$cur"; return ;;
    --user) COMPREPLY=($(compgen -u -- "$cur")); return ;;
    --comm) COMPREPLY=($(compgen -W "$(cat /proc/[0-9]*/comm 2>/dev/null | sort -u)" -- "$cur")); return ;;
    --unit) COMPREPLY=($(compgen -W "$(systemctl list-units --type=service,scope --no-legend --plain 2>/dev/null | awk '{print $1}')" -- "$cur")); return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W '--revert --dry-run --all --pid --exclude --user --comm --unit --allow-partial --status --outdated --apply --bundles-dir --json --key --allow-unverified --allow-aliasing --stop-timeout --jobs -V --version -h --help' -- "$cur"))
    return
  fi
  case $mode in
    status|outdated) _ulp_pids "$cur" ;;
    all) COMPREPLY=($(compgen -f -X '!*.ulp' -- "$cur") $(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
    apply)
      # PID first, then the bundle.
      if ((nargs == 0)); then _ulp_pids "$cur"
      else COMPREPLY=($(compgen -f -X '!*.ulp' -- "$cur") $(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null
      fi ;;
  esac
}

complete -F _ulp_pack ulp-pack
complete -F _ulp_trigger ulp-trigger
