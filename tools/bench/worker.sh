#!/usr/bin/env bash
# Reproduces the "Workers" figures of BENCHMARKS.md: the same N mailbox
# keys (default 100,000) moved between two DEPs by one `keytier migrate`
# (keytier_migrate_run, one process, no claims), then by one `keytier
# worker --once`, then by three at once, wall time of each; for each STORE
# named (default sqlite), one after the other in the same run.
#
#   tools/bench/worker.sh [N] [BUILD_DIR] [STORE...]
#       (defaults: 100000, build, sqlite; STORE: sqlite or postgresql)
#
# The module's tokens and the SQLite file live in a temp dir under
# ${BENCH_DIR:-/var/tmp} (ext4), removed at the end; PostgreSQL is a
# throwaway cluster (tools/bench/common.sh, bench_pg) removed at the end.
# DEP roots are AES keys on keytier's module, new ones for each store.
set -euo pipefail
. "$(dirname "$0")/common.sh"
n=${1:-100000}
build=${2:-build}
shift 2 || shift $#
[ $# -gt 0 ] || set -- sqlite
bench_setup worker "${BENCH_DIR:-/var/tmp}" "$build"
items=$(dirname "$module")/../tests/lib/lifecycle/worker-items
[ -x "$items" ] || { echo "build $build first (tools/build.sh $build)" >&2; exit 1; }

# run LABEL TARGET CMD...: assigns every key to TARGET, times CMD.
run()
{
    local label=$1 target=$2 s e
    shift 2
    "$kt" assign --tenant bench --all --dep "$target" >/dev/null
    s=$(date +%s.%N)
    "$@"
    e=$(date +%s.%N)
    printf '%-12s %-34s %7.1f s  %8.0f keys/s\n' "$store" "$label" \
        "$(echo "$e - $s" | bc)" "$(echo "$n / ($e - $s)" | bc -l)"
}
three()
{
    local p=() i
    for i in 1 2 3; do "$kt" worker --once >/dev/null 2>&1 & p+=($!); done
    for i in "${p[@]}"; do wait "$i"; done
}
mig() { "$kt" migrate --tenant bench >/dev/null; }
one() { "$kt" worker --once >/dev/null 2>&1; }

for store in "$@"; do
    bench_lib_conf "$store" "$store"
    a1=$(bench_key vault-a "$store-a1") b1=$(bench_key vault-b "$store-b1")
    a2=$(bench_key vault-a "$store-a2") b2=$(bench_key vault-b "$store-b2")
    d1=$(bench_dep "$a1" "$b1") d2=$(bench_dep "$a2" "$b2")
    t0=$(date +%s.%N)
    "$items" make bench Exchange "$d1" "$n" "items-$store"
    made=$(date +%s.%N)
    printf '%-12s %-34s %7.1f s  %8.0f keys/s\n' "$store" \
        "created $n mailbox keys + items" "$(echo "$made - $t0" | bc)" \
        "$(echo "$n / ($made - $t0)" | bc -l)"
    run "keytier migrate (one process)" "$d2" mig
    run "keytier worker --once (one)" "$d1" one
    run "keytier worker --once (three)" "$d2" three
    "$items" check bench Exchange "$d1" "$d2" "$n" "items-$store" >/dev/null
    echo "$store: every key under the last DEP once, every item readable"
done
