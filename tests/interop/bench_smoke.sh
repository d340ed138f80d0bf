#!/usr/bin/env bash
# Smoke run of the benchmark driver: tiny iteration counts, asserting that
# it completes and reports a figure for every benchmark on every module it
# was given. Never asserts speed.
#
#   bench_smoke.sh KT_BENCH [keytier]
#
# With "keytier" the run includes KT_MODULE beside SoftHSM2.
set -euo pipefail
. "${KT_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/common.sh"

[ $# -ge 1 ] || kt_fail "usage: $0 KT_BENCH [keytier]"
bench=$1
with_keytier=${2:-}
kt_tmpdir

args=(--softhsm2 "$SOFTHSM2_MODULE")
modules=(softhsm2)
if [ "$with_keytier" = keytier ]; then
    args+=(--keytier "$KT_MODULE")
    modules+=(keytier)
fi

# Bad options are refused by name, before any token is touched.
expect_fail "kt-bench: unknown benchmark 'foo' in --only" \
    kt_own "$bench" "${args[@]}" --only wrap,foo
expect_fail "kt-bench: bad --find-sizes 10,5 (increasing counts, at most 4)" \
    kt_own "$bench" "${args[@]}" --find-sizes 10,5

expect_ok kt_own "$bench" "${args[@]}" --seconds 0.01 --max-ops 5 \
    --find-sizes 3,6 --fill-threads 2 --kdf-cost 10 --no-openssl-speed \
    --dir "$KT_TMP" --tsv "$KT_TMP/out.tsv"
out=$KT_LAST_OUTPUT
assert_contains "$out" "targets" "report"
# The driver removes its token dirs.
[ -z "$(find "$KT_TMP" -maxdepth 1 -name 'kt-bench.*')" ] ||
    kt_fail "kt-bench left its token dir behind"

rows=("login + logout (user PIN)" "AES-256 keygen (session key)" "wrap AES-256, RFC 5649, token root"
    "unwrap AES-256, RFC 5649, token root" "AES-256-GCM encrypt 4 KiB"
    "create token object (durable)" "find by label among 3"
    "find by label among 6" "unwrap + destroy, 1 thread"
    "unwrap + destroy, 2 threads (total)")
asym_rows=("RSA-2048 sign SHA256-RSA-PKCS" "ECDSA P-256 sign (CKM_ECDSA)"
    "RSA-2048 OAEP unwrap AES-256")

# figure ROW MODULE: the ops/s the TSV holds for ROW and MODULE.
figure()
{
    awk -F'\t' -v r="$1" -v m="$2" '$1 == r && $2 == m { print $3 }' \
        "$KT_TMP/out.tsv"
}

# check_row ROW MODULE: a positive figure was reported.
check_row()
{
    local v
    v=$(figure "$1" "$2")
    [ -n "$v" ] || kt_fail "no '$1' figure for $2"
    awk -v v="$v" 'BEGIN { exit !(v > 0) }' ||
        kt_fail "'$1' on $2: $v ops/s"
}

for m in "${modules[@]}"; do
    for r in "${rows[@]}"; do
        check_row "$r" "$m"
    done
    # RSA and EC rows are measured wherever the module lists RSA keygen.
    kt_module_use "$m" "$KT_TMP/mechs-$m"
    # read whole: grep -q stopping early gives pkcs11-tool a SIGPIPE
    if grep -q 'RSA-PKCS-KEY-PAIR-GEN' <<<"$(kt_p11 -M 2>/dev/null)"; then
        for r in "${asym_rows[@]}"; do
            check_row "$r" "$m"
        done
    fi
done
kt_log PASS
