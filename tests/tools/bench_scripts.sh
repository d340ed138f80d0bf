#!/usr/bin/env bash
# The store benchmarks of tools/bench/ run with tiny sizes on SQLite and on
# a throwaway PostgreSQL cluster and print every figure (never a speed
# check): worker.sh (migration by `keytier migrate`, one and three
# `keytier worker --once`, each key once under the last DEP and every item
# readable) and dep_read.sh (raw unwraps, cold and cached DEP-key reads,
# the medians); neither leaves its temp dir or its cluster behind.
#   tests/tools/bench_scripts.sh BUILD_DIR
. "${KT_SOURCE_ROOT:?}/tests/common.sh"
kt_tmpdir
build=$1
# Everything the scripts run of ours is a sanitizer-built executable that
# loads its runtime itself; PostgreSQL's server must not get the preload.
unset LD_PRELOAD
mkdir "$KT_TMP/bench"
export BENCH_DIR=$KT_TMP/bench TMPDIR=$KT_TMP/bench
# gone DIR...: each cluster a script announced has been removed
gone()
{
    local out=$1 d
    d=$(printf '%s\n' "$out" | sed -n 's/^throwaway PostgreSQL cluster in //p')
    [ -n "$d" ] || kt_fail "no cluster announced in: $out"
    [ ! -e "$d" ] || kt_fail "the cluster $d was left behind"
}

out=$("$KT_SOURCE_ROOT/tools/bench/worker.sh" 40 "$build" sqlite postgresql 2>&1) ||
    kt_fail "worker.sh failed: $out"
for store in sqlite postgresql; do
    for row in "created 40 mailbox keys + items" \
        "keytier migrate (one process)" "keytier worker --once (one)" \
        "keytier worker --once (three)"; do
        assert_contains "$out" "$(printf '%-12s %s' "$store" "$row")"
    done
    assert_contains "$out" "$store: every key under the last DEP once, every item readable"
done
gone "$out"

out=$("$KT_SOURCE_ROOT/tools/bench/dep_read.sh" "$build" 20 1 2>&1) ||
    kt_fail "dep_read.sh failed: $out"
summary=${out#*== median of 1 rounds (20 reads per figure)}
[ "$summary" != "$out" ] || kt_fail "dep_read.sh printed no medians: $out"
for row in "raw C_UnwrapKey + CKA_VALUE + destroy, keytier's module" \
    "raw C_UnwrapKey + CKA_VALUE + destroy, SoftHSM2" \
    "DEP-key read, cold (store read + unwrap by keytier's module), SQLite store" \
    "DEP-key read, cached (cache hit), SQLite store" \
    "DEP-key read, cold (store read + unwrap by keytier's module), PostgreSQL store" \
    "DEP-key read, cached (cache hit), PostgreSQL store"; do
    printf '%s\n' "$summary" | grep -Eq "^\| $(printf '%s' "$row" |
        sed 's/[][().+*^$|\\]/\\&/g') \| [0-9.]+ \| [0-9.]+ \|$" ||
        kt_fail "no median row '$row' in: $summary"
done
gone "$out"

assert_eq "" "$(ls -A "$KT_TMP/bench")" "files the scripts left"
kt_log "ok"
