#!/usr/bin/env bash
# tools/test-count.sh: the count of tests tools/test.sh runs only grows.
set -euo pipefail
tc=${KT_SOURCE_ROOT:?}/tools/test-count.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/summary" <<'S'
Ok:                 90
Expected Fail:      0
Fail:               2
Unexpected Pass:    0
Skipped:            1
Timeout:            1
S
[ "$("$tc" run "$tmp/summary")" = 94 ] || fail "run: every outcome counts"

printf '# comment\nbuild 94\nbuild-san 90\n' >"$tmp/count"
"$tc" check "$tmp/count" build 94 >/dev/null || fail "check: equal count passes"
out=$("$tc" check "$tmp/count" build 95) || fail "check: a higher count passes"
case $out in *"record them with tools/test.sh --record-count"*) ;; *) fail "check: higher count not reported: $out" ;; esac
if "$tc" check "$tmp/count" build 93 2>"$tmp/err"; then fail "check: a lower count passes"; fi
grep -q "build ran 93 tests, fewer than the 94 recorded" "$tmp/err" || fail "check: message $(cat "$tmp/err")"
if "$tc" check "$tmp/count" build-tsan 10 2>/dev/null; then fail "check: a build without a count passes"; fi

"$tc" record "$tmp/count" build 100 >/dev/null || fail "record: raise"
"$tc" record "$tmp/count" build-tsan 35 >/dev/null || fail "record: new build"
if "$tc" record "$tmp/count" build-san 89 2>/dev/null; then fail "record: lowered"; fi
[ "$(cat "$tmp/count")" = "$(printf '# comment\nbuild 100\nbuild-san 90\nbuild-tsan 35')" ] ||
  fail "record: file is $(cat "$tmp/count")"

# The committed file names every build of tools/test.sh.
for d in build build-san build-tsan; do
  grep -q "^$d [0-9][0-9]*$" "$KT_SOURCE_ROOT/tests/test-count" || fail "tests/test-count: no $d"
done
echo "test-count: ok"
