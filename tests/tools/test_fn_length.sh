#!/usr/bin/env bash
# tools/check-fn-length.sh finds a function one line over the limit, names
# its file, line, name and length, and leaves alone a function at the
# limit, tables and struct definitions however long.
set -euo pipefail
chk=${KT_SOURCE_ROOT:?}/tools/check-fn-length.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

body() { # N: N-1 statement lines; with the closing brace, a length of N
  for ((i = 1; i < $1; i++)); do echo "    x += $i;"; done
}
mkdir "$tmp/src" "$tmp/src/sub" "$tmp/empty"
{
  echo "static const int table[] = {"
  for ((i = 0; i < 200; i++)); do echo "    $i,"; done
  echo "};"
  echo "struct wide {"
  for ((i = 0; i < 100; i++)); do echo "    int f$i;"; done
  echo "};"
  echo "int at_limit(int x)"
  echo "{"
  body 80
  echo "}"
} >"$tmp/src/a.c"
{
  echo "#include <stddef.h>"
  echo "KT_NODISCARD static unsigned long"
  echo "one_over(const char *name,"
  echo "         size_t len)"
  echo "{"
  echo "    unsigned long x = len;"
  body 80
  echo "}"
  echo "static inline int *short_one(void)"
  echo "{"
  echo "    return NULL;"
  echo "}"
} >"$tmp/src/sub/b.h"

out=$("$chk" "$tmp/src") && fail "a function of 81 lines passes"
want="$tmp/src/sub/b.h:5: one_over 81 lines (max 80)
check-fn-length: 1 function(s) over 80 lines"
[ "$out" = "$want" ] || fail "output is: $out"

"$chk" --max 81 "$tmp/src" >/dev/null || fail "--max 81 refuses 81 lines"
out=$("$chk" --max 79 "$tmp/src/a.c") && fail "--max 79 passes 80 lines"
case $out in "$tmp/src/a.c:306: at_limit 80 lines (max 79)"*) ;; *) fail "--max 79: $out" ;; esac

all=$("$chk" --print "$tmp/src/sub/b.h" || true)
grep -qx "$tmp/src/sub/b.h:88: short_one 2 lines" <<<"$all" || fail "--print: $all"

set +e
"$chk" "$tmp/nothing" 2>/dev/null; [ $? -eq 2 ] || fail "a missing path is not a usage error"
"$chk" "$tmp/empty" 2>/dev/null; [ $? -eq 2 ] || fail "a folder without C files passes"
"$chk" 2>/dev/null; [ $? -eq 2 ] || fail "no path is not a usage error"
"$chk" --max x "$tmp/src" 2>/dev/null; [ $? -eq 2 ] || fail "--max x accepted"
set -e
echo "fn-length check: ok"
