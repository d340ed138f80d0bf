#!/usr/bin/env bash
# Configures (or reconfigures) a meson build directory and builds it.
#   tools/build.sh DIR [meson options...]
set -euo pipefail
dir=$1; shift
if [ -f "$dir/build.ninja" ]; then
  meson setup --reconfigure "$dir" "$@" >/dev/null
else
  meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir" >/dev/null
