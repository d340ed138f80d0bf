#!/usr/bin/env bash
# keytier demo: every step's outcome, the servers stopped and the temp dir
# removed afterwards; and the same cleanup when the demo is killed with
# SIGTERM halfway (servers frozen or not).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
export TMPDIR=$KT_TMP/tmp
mkdir -p "$TMPDIR"
unset KEYTIER_CONF

kt_log "the README's command (tools/demo.sh, on this build) runs every step"
[ -n "${KT_BUILD_ROOT:-}" ] || kt_fail "KT_BUILD_ROOT is not set"
# tools/demo.sh --built execs the CLI at once: kt_own gives it leak detection
expect_ok kt_own "$KT_SOURCE_ROOT/tools/demo.sh" --built "$KT_BUILD_ROOT"
out=$KT_LAST_OUTPUT
printf '%s\n' "$out" >&2
step()
{
    grep -E "^ok $1: " <<<"$out" >/dev/null ||
        kt_fail "step $1 ('$2') missing; output: $out"
    grep -E "^ok $1: $2" <<<"$out" >/dev/null ||
        kt_fail "step $1: expected '$2'; output: $(grep -E "^ok $1: " <<<"$out")"
}
step 1 "customer vault A: token 'vault-a' on SoftHSM2 with root key 'contoso-root-a' \(RSA-2048, private key never extractable\)$"
step 2 "customer vault B: token 'vault-b' on keytier with root key 'contoso-root-b' \(RSA-2048, private key never extractable\)$"
step 3 "service token 'keytier-service' on keytier \(holds the availability keys\)$"
step 4 "each vault is remote: p11-kit server pid [0-9]+ serves vault A, pid [0-9]+ vault B"
step 5 "DEP [0-9a-f-]{36} for tenant 'contoso' \(Exchange\): its key is stored only wrapped by vault A, vault B and a new availability key$"
step 6 "mailbox 'alice@contoso.example' created; a 79-byte message sealed into a [0-9]+-byte envelope and read back intact$"
step 7 "vault A frozen \(SIGSTOP on its p11-kit server\): read still served by vault B in [0-9]+ ms, no fallback, no audit record$"
step 8 "both vaults frozen: read served by the availability key after [0-9.]+ s; audited 'Fallback to availability key' \(A timeout \(system\), B timeout \(system\)\)$"
step 9 "vaults back \(SIGCONT\): read served by a customer key again \([0-9]+ ms\), no new fallback$"
step 10 "the customer destroyed both root keys: a user read is refused: access revoked: the customer keys refused$"
step 11 "an internal operation \('index'\) still reads through the availability key, and the audit log says so$"
step 12 "Lockbox: approver 'contoso-approver' made an ECDSA P-256 key pair in its own token 'lockbox-approver' \(sign only, never extractable\); its fingerprint sha256:[0-9a-f]{16}\.\.\. is pinned in the configuration$"
step 13 "recovery refused without an approval; 'service-operator' asked for one, 'contoso-approver' granted it with the key in its token; new DEP [0-9a-f-]{36}, 1 key\(s\) moved, the user reads the message again; the single-use approval is spent$"
step 14 "an approval granted for 3 s expired by itself: refused, and its expiry is in the audit log$"
step 15 "audit log: 16 records, hash chain verified, anchored at record 16 by the service token$"
assert_contains "$out" "== demo complete: 15 steps behaved as claimed; servers stopped, temp dir removed"
! grep -q FAILED <<<"$out" || kt_fail "a step failed"
for pid in $(grep -oE 'pid [0-9]+' <<<"$out" | cut -d' ' -f2); do
    ! pid_alive "$pid" || kt_fail "p11-kit server $pid still runs after the demo"
done
assert_eq "" "$(ls -A "$TMPDIR")" "temp dir left by the demo"

kt_log "--json: one document per step"
expect_ok kt --json demo
assert_eq 15 "$(jq -s 'map(select(.ok)) | length' <<<"$KT_LAST_OUTPUT")"
assert_eq 15 "$(jq -s 'last | .step' <<<"$KT_LAST_OUTPUT")"

kt_log "--no-softhsm2: both vaults on keytier's module"
expect_ok kt demo --no-softhsm2 --module "$KT_MODULE"
assert_contains "$KT_LAST_OUTPUT" "ok 1: customer vault A: token 'vault-a' on keytier with root key 'contoso-root-a'"
assert_contains "$KT_LAST_OUTPUT" "== demo complete: 15 steps behaved as claimed"
expect_fail "keytier demo: --softhsm2 $KT_TMP/none.so: No such file or directory [KEYTIER_E_NOT_FOUND]" \
    kt demo --softhsm2 "$KT_TMP/none.so"
expect_rc 6 kt demo --softhsm2 "$KT_TMP/none.so"
expect_fail "keytier demo: module $KT_TMP/none.so: No such file or directory [KEYTIER_E_NOT_FOUND]" \
    kt demo --module "$KT_TMP/none.so"
assert_eq "" "$(ls -A "$TMPDIR")" "temp dir left by the demo"

kt_log "SIGTERM while vault A is frozen: servers stopped, temp dir removed"
for at in 4 7; do
    fifo=$KT_TMP/demo-out-$at
    "$KT_CLI" demo >"$fifo" 2>&1 &
    demo_pid=$!
    kt_on_exit "kill -KILL $demo_pid 2>/dev/null || true"
    for ((i = 0; i < 300; i++)); do
        grep -q "^ok $at: " "$fifo" && break
        sleep 0.05
    done
    grep -q "^ok $at: " "$fifo" || kt_fail "demo did not reach step $at: $(cat "$fifo")"
    pids=$(grep -oE 'pid [0-9]+' "$fifo" | cut -d' ' -f2)
    kill -TERM "$demo_pid"
    rc=0
    wait "$demo_pid" || rc=$?
    assert_eq 143 "$rc" "demo killed by SIGTERM"
    for pid in $pids; do
        ! pid_alive "$pid" || kt_fail "server $pid survived the demo's SIGTERM at step $at"
    done
    assert_eq "" "$(ls -A "$TMPDIR")" "temp dir left after SIGTERM at step $at"
done
kt_log "ok"
