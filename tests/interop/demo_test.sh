#!/usr/bin/env bash
# Runs the demo's steps (tools/demo.sh --module) and checks every step's
# outcome line.
#
#   demo_test.sh keytier    every step must behave as claimed
#   demo_test.sh softhsm2   SoftHSM2 2.6 refuses pkcs11-tool's unwrap
#                           template (CKA_VALUE_LEN): the demo must notice,
#                           say which step failed and exit 1
set -euo pipefail
. "${KT_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/common.sh"

[ $# -eq 1 ] || kt_fail "usage: $0 keytier|softhsm2"
kt_tmpdir
export TMPDIR=$KT_TMP
demo=$KT_SOURCE_ROOT/tools/demo.sh

steps=(
    "ok 1: created token 'demo' (security officer PIN and user PIN set)"
    "ok 2: generated root key 'demo-root' in the token: AES-256, sensitive, never extractable"
    "ok 3: imported a 256-bit data key 'data-key' (extractable, so it can be wrapped)"
    "ok 4: wrapped 'data-key' under the root (RFC 5649, CKM_AES_KEY_WRAP_PAD): 40-byte blob "
    "ok 5: unwrapped the blob with the root into a new token key 'data-key-unwrapped'"
    "ok 6: the unwrapped key is the original key: token AES-CBC-PAD ciphertext equals openssl's"
    "ok 7: the root's value cannot be read: the token answers CKR_ATTRIBUTE_SENSITIVE"
    "ok 8: the root cannot be wrapped out of the token: CKR_KEY_UNEXTRACTABLE"
)

case $1 in
keytier)
    expect_ok "$demo" --module "$KT_MODULE"
    for s in "${steps[@]}"; do
        assert_contains "$KT_LAST_OUTPUT" "$s" "demo output"
    done
    assert_contains "$KT_LAST_OUTPUT" \
        "== demo complete: 8 steps behaved as claimed (temp dir removed)"
    assert_not_contains "$KT_LAST_OUTPUT" "FAILED"
    ;;
softhsm2)
    expect_fail "FAILED 5: unwrap the blob with the root" \
        "$demo" --module "$SOFTHSM2_MODULE"
    for s in "${steps[@]:0:4}"; do
        assert_contains "$KT_LAST_OUTPUT" "$s" "demo output"
    done
    assert_contains "$KT_LAST_OUTPUT" \
        "error: PKCS11 function C_UnwrapKey failed: rv = CKR_ATTRIBUTE_READ_ONLY (0x10)"
    assert_not_contains "$KT_LAST_OUTPUT" "demo complete"
    ;;
*) kt_fail "unknown module $1" ;;
esac
# The demo removes its temp dir on every path.
[ -z "$(find "$KT_TMP" -maxdepth 1 -name 'keytier-demo.*')" ] ||
    kt_fail "the demo left its temp dir behind"
kt_log PASS
