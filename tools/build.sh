#!/usr/bin/env bash
# Configures (or reconfigures) a meson build directory and builds it.
#   tools/build.sh DIR [meson options...]
# Warnings are errors here (-Dwerror=true before the caller's options, which
# may turn it off): meson.build leaves werror off for packagers.
# Quiet when it works; on a failure the last lines of meson's or ninja's
# output (the compiler's error) go to stderr.
set -euo pipefail
dir=$1; shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -f "$dir/build.ninja" ]; then
  setup=(meson setup --reconfigure "$dir" -Dwerror=true "$@")
else
  setup=(meson setup "$dir" -Dwerror=true "$@")
fi
if ! { "${setup[@]}" && ninja -C "$dir"; } > "$log" 2>&1; then
  echo "tools/build.sh: building $dir failed:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
