#!/usr/bin/env bash
# Checks that no C function is longer than a limit, so that the logic a
# reviewer must hold in their head fits on a screen or two.
#
#   tools/check-fn-length.sh [--max N] [--print] PATH...
#
# PATHs are folders (searched for *.c and *.h) or files. The tree is
# clang-formatted (.clang-format: Linux braces), so a function body is the
# lines from a '{' alone in column 0 to the next '}' alone in column 0;
# its length counts the lines after the opening brace, the closing brace
# included. Tables and struct definitions open their brace at the end of a
# line and close with "};", so they are never counted. The function's name
# is the identifier before the first '(' of the last line above the brace
# that starts in column 0.
#
# Options:
#   --max N   the longest allowed function (default 80)
#   --print   print every function with its length, not only the long ones
# Output: "FILE:LINE: NAME LENGTH lines (max N)" for each function over
# the limit. Exit status: 0 none, 1 some (each printed), 2 usage.
set -euo pipefail

max=80
print=0
while [ $# -gt 0 ]; do
  case $1 in
    --max)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "check-fn-length: --max wants a number" >&2; exit 2; }
      max=$2; shift 2 ;;
    --print) print=1; shift ;;
    --) shift; break ;;
    -*) echo "check-fn-length: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "usage: check-fn-length.sh [--max N] [--print] PATH..." >&2
  exit 2
fi

files=()
for p in "$@"; do
  if [ -d "$p" ]; then
    while IFS= read -r f; do files+=("$f"); done \
      < <(find "$p" -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)
  elif [ -f "$p" ]; then
    files+=("$p")
  else
    echo "check-fn-length: no such file or folder: $p" >&2
    exit 2
  fi
done
if [ ${#files[@]} -eq 0 ]; then
  # A path that holds no C file is a mistake in the caller, not a pass.
  echo "check-fn-length: no C files under $*" >&2
  exit 2
fi

awk -v max="$max" -v print_all="$print" '
  FNR == 1 { decl = ""; infn = 0 }
  !infn && /^[A-Za-z_]/ { decl = $0 }
  !infn && /^\{[ \t]*$/ {
    infn = 1; start = FNR
    name = decl; sub(/\(.*/, "", name)
    n = split(name, w, /[ \t*]+/); name = w[n]
    if (name == "") name = "?"
    next
  }
  infn && /^\}[ \t]*$/ {
    infn = 0; len = FNR - start; decl = ""
    if (len > max) {
      printf "%s:%d: %s %d lines (max %d)\n", FILENAME, start, name, len, max
      long++
    } else if (print_all) {
      printf "%s:%d: %s %d lines\n", FILENAME, start, name, len
    }
  }
  END {
    if (long) {
      printf "check-fn-length: %d function(s) over %d lines\n", long, max
      exit 1
    }
  }' "${files[@]}"
