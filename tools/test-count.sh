#!/usr/bin/env bash
# The number of tests tools/test.sh runs may only grow: a suite whose tests
# stop being registered, or a build that drops an area, makes it fail
# instead of passing with fewer tests.
#
#   tools/test-count.sh run SUMMARY          tests run according to a
#                                            `meson test` summary
#   tools/test-count.sh check FILE DIR N     fails if N is below DIR's
#                                            count in FILE
#   tools/test-count.sh record FILE DIR N    raises DIR's count in FILE to N
#                                            (refuses to lower it)
#
# FILE (tests/test-count, committed) has one "DIR COUNT" line per build
# directory of tools/test.sh. A count is lowered only by editing the file
# in a commit that says which tests went away and why.
set -euo pipefail

count_of() { # FILE DIR -> the recorded count, or nothing
  awk -v d="$2" '$1 == d { print $2 }' "$1"
}

case ${1:-} in
run)
  # Every outcome meson counts: a test that ran is one of these.
  awk '/^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout):/ { s += $NF }
       END { print s + 0 }' "$2"
  ;;
check)
  file=$2 dir=$3 n=$4
  want=$(count_of "$file" "$dir")
  if [ -z "$want" ]; then
    echo "test count: $file has no count for $dir" >&2
    exit 1
  fi
  if [ "$n" -lt "$want" ]; then
    echo "test count: $dir ran $n tests, fewer than the $want recorded in $file" >&2
    exit 1
  fi
  if [ "$n" -gt "$want" ]; then
    echo "test count: $dir ran $n tests ($want recorded): record them with tools/test.sh --record-count"
  fi
  ;;
record)
  file=$2 dir=$3 n=$4
  want=$(count_of "$file" "$dir")
  if [ -n "$want" ] && [ "$n" -lt "$want" ]; then
    echo "test count: $dir ran $n tests, fewer than the $want recorded: not lowered" >&2
    exit 1
  fi
  tmp=$(mktemp "$file.XXXXXX")
  awk -v d="$dir" -v n="$n" '
    $1 == d { print d, n; done = 1; next } { print }
    END { if (!done) print d, n }' "$file" >"$tmp"
  mv "$tmp" "$file"
  echo "test count: $dir $n recorded in $file"
  ;;
*)
  echo "usage: tools/test-count.sh run SUMMARY | check FILE DIR N | record FILE DIR N" >&2
  exit 2
  ;;
esac
