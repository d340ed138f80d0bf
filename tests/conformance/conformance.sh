#!/usr/bin/env bash
# conformance.sh BINARY NAME PEER [GAPS]
#
# Runs one module API test binary (tests/module/api/test_NAME, libcheck) against
# the PKCS#11 module in KT_MODULE and compares the tests that failed with
# the known gaps of PEER listed in GAPS (a table, one row per test:
# | binary | tcase:test | why |). Passes when PEER fails exactly the listed
# tests: a failure not in the table is a regression (of keytier) or a new
# difference (of the peer) to explain; a listed test that passes is a stale
# row to remove; a row whose reason starts with "race:" accepts either
# outcome. Without GAPS every test must pass.
set -euo pipefail
bin=$1 name=$2 peer=$3 gaps=${4:-}
[ -x "$bin" ] || { echo "conformance: $bin is not executable" >&2; exit 1; }
[ -n "${KT_MODULE:-}" ] || { echo "conformance: KT_MODULE is not set" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tap=$tmp/run.tap
set +e
# The binary is ours: leak detection on for it in ASan builds (the shell
# keeps the foreign tools' ASAN_OPTIONS, tests/meson.build).
ASAN_OPTIONS=${KT_OWN_ASAN_OPTIONS:-${ASAN_OPTIONS:-}} \
    CK_TAP_LOG_FILE_NAME=$tap "$bin" >"$tmp/out" 2>&1
rc=$?
set -e

# The plan line ("1..N") is written last: without it the binary died.
plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$tap" 2>/dev/null || true)
if [ -z "$plan" ]; then
  cat "$tmp/out"
  echo "conformance: $name on $peer did not complete (exit $rc)" >&2
  exit 1
fi
results=$(grep -c '^\(not \)\?ok ' "$tap" || true)
if [ "$results" -ne "$plan" ]; then
  echo "conformance: $name on $peer: $results results for a plan of $plan" >&2
  exit 1
fi

# "not ok 3 - FILE:TCASE:TEST: message" -> TCASE:TEST (a looped test fails
# when any of its iterations fails).
awk '/^not ok /{ sub(/^not ok [0-9]+ - /, ""); split($0, f, ":");
                 print f[2] ":" f[3] }' "$tap" | sort -u >"$tmp/failed"
: >"$tmp/expected"
# Rows whose reason starts with "race:" name a race in the peer: the test
# may pass or fail from run to run, so either outcome is accepted.
: >"$tmp/racy"
if [ -n "$gaps" ]; then
  awk -F'|' -v b="$name" -v racy="$tmp/racy" '
    NF >= 4 { bin = $2; t = $3; why = $4
              gsub(/[ `]/, "", bin); gsub(/[ `]/, "", t); sub(/^ +/, "", why)
              if (bin != b) next
              if (why ~ /^race:/) print t > racy; else print t }' \
    "$gaps" | sort -u >"$tmp/expected"
  sort -u -o "$tmp/racy" "$tmp/racy"
fi

status=0
while read -r t; do
  [ -n "$t" ] || continue
  echo "$peer: $name: $t FAILED (not a known gap)" >&2
  grep -F ":$t:" "$tap" | grep '^not ok' | sed 's/^/    /' >&2 || true
  status=1
done < <(comm -23 "$tmp/failed" "$tmp/expected" | comm -23 - "$tmp/racy")
while read -r t; do
  [ -n "$t" ] || continue
  echo "$peer: $name: $t passes but is listed as a gap in $gaps: remove its row" >&2
  status=1
done < <(comm -13 "$tmp/failed" "$tmp/expected")

echo "$peer: $name: $plan results, $(wc -l <"$tmp/failed") tests failed," \
  "$(wc -l <"$tmp/expected") known gaps, $(wc -l <"$tmp/racy") known races"
exit $status
