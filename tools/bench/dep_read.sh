#!/usr/bin/env bash
# The "DEP-key reads by store" figures of BENCHMARKS.md: bench-lib's part
# 5 (tools/bench/lib.c) on a SQLite file and on a throwaway PostgreSQL
# cluster (tools/bench/common.sh, bench_pg: durable commits, removed at the
# end), alternating store by store for ROUNDS rounds, then the median of
# the rounds' p50 and p99 for every row.  Each run of bench-lib builds its
# own tokens (root A on SoftHSM2, root B on keytier's module) and DEP.
#
#   tools/bench/dep_read.sh [BUILD_DIR] [READS] [ROUNDS]
#       (defaults: build, 5000 reads per figure, 3 rounds)
set -euo pipefail
. "$(dirname "$0")/common.sh"
build=$(cd "${1:-$bench_root/build}" && pwd)
reads=${2:-5000}
rounds=${3:-3}
lib=$build/tools/bench/bench-lib
[ -x "$lib" ] || { echo "build $build first (tools/build.sh $build)" >&2; exit 1; }
softhsm=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
dir=$(mktemp -d)
bench_pg
# one STORE: bench-lib's part 5 on that store
one()
{
    local store=
    [ "$1" = sqlite ] || store="$bench_pg_info dbname=$(bench_pg_db)"
    env ${store:+KT_BENCH_STORE="$store"} KT_BENCH_PARTS=5 \
        KT_BENCH_READS="$reads" "$lib" "$softhsm" \
        "$build/module/keytier-pkcs11.so" 1
}
for r in $(seq "$rounds"); do
    for store in sqlite postgresql; do
        echo "== round $r, $store"
        one $store | grep '^| [^b-]' | tee -a "$dir/rows"
    done
done
# median MEASURE LABEL: the median over the rounds of p50 or p99
median()
{
    grep -F "| $2 |" "$dir/rows" | sed -n "s/.* $1 \([0-9.]*\) us.*/\1/p" |
        sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo
echo "== median of $rounds rounds ($reads reads per figure)"
echo "| figure | p50 us | p99 us |"
echo "|---|---|---|"
cut -d'|' -f2 "$dir/rows" | sed 's/^ //; s/ $//' | awk '!seen[$0]++' |
    while IFS= read -r label; do
        echo "| $label | $(median p50 "$label") | $(median p99 "$label") |"
    done
