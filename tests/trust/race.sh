#!/usr/bin/env bash
# Two and more uses of one approval at the same moment, from separate
# contexts (separate store connections): a single-use approval serves
# exactly one of them, a multi-use one all of them.
#   race.sh RACE_CONSUME_BINARY
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
race=$1
trust_setup

for round in 1 2 3; do
    kt_log "round $round: 8 uses of a single-use approval at once"
    id=$(approve purge acme '*')
    expect_ok kt_own "$race" "$KEYTIER_LIB_CONF" purge acme '*' "$id" 8
    assert_eq "ok=1 used=7 other=0" "$KT_LAST_OUTPUT"
    assert_eq used "$(kt --json approval list --tenant acme | jq -r "select(.id == \"$id\") | .state")"
    assert_eq 1 "$(kt --json audit list --activity "Approval used" | grep -c "\"ApprovalId\":\"$id\"")"
done

kt_log "two at once, twice"
for round in 1 2; do
    id=$(approve purge acme '*')
    expect_ok kt_own "$race" "$KEYTIER_LIB_CONF" purge acme '*' "$id" 2
    assert_eq "ok=1 used=1 other=0" "$KT_LAST_OUTPUT"
done

kt_log "a multi-use approval serves every use until it expires"
id=$(kt approval request --op purge --tenant acme --justification "batch" \
    --requester ops --multi-use)
kt approval grant "$id" --approver bob --key "$KEY_BOB" --pin-env PIN >/dev/null ||
    kt_fail "grant multi-use"
expect_ok kt_own "$race" "$KEYTIER_LIB_CONF" purge acme '*' "$id" 4
assert_eq "ok=4 used=0 other=0" "$KT_LAST_OUTPUT"
assert_eq granted "$(kt --json approval list --tenant acme | jq -r "select(.id == \"$id\") | .state")"
expect_ok kt audit verify
kt_log "ok"
