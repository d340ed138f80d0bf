#!/usr/bin/env bash
# bench-lifecycle completes and prints every figure (never a speed check).
. "$KT_SOURCE_ROOT/tests/common.sh"
kt_tmpdir
out=$(TMPDIR=$KT_TMP kt_own "$1" "$KT_MODULE" "$SOFTHSM2_MODULE" 300 2 2>&1) ||
    kt_fail "bench-lifecycle failed: $out"
for line in "mailbox keys created          300 in " \
    "migration to a new DEP        300 keys in " \
    "roll key A (AES, SoftHSM2)               2 rolls  p50 " \
    "roll key B (AES, keytier module)         2 rolls  p50 "; do
    assert_contains "$out" "$line"
done
kt_log "ok"
