#!/usr/bin/env bash
# Approvals of privileged operations, as the attacks they must stop: each
# step is something a service operator with write access to the store, the
# CLI and the service token (but not the configuration, nor an approver's
# token) or a careless one would try, and must fail with the exact error.
# Approvers: alice (ECDSA P-256, SoftHSM2) and bob (RSA-2048 PSS,
# keytier's module), pinned and registered; mallory's key is not pinned.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
trust_setup

dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create"
other=$(kt --json dep create --tenant globex --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create"
URI_C=$(kt token keygen --token vault-a --label root-c --type aes256 \
    --pin-env PIN) || kt_fail "keygen root-c"
URI_D=$(kt token keygen --token vault-b --label root-d --type aes256 \
    --pin-env PIN) || kt_fail "keygen root-d"

kt_log "privileged commands without an approval"
expect_fail "keytier purge: this operation needs a live approval (--approval ID): purge of acme needs an approval: keytier approval request --op purge --tenant acme --scope *, granted by an approver, then --approval ID [KEYTIER_E_APPROVAL_REQUIRED]" \
    kt purge --tenant acme --yes
expect_rc 10 kt purge --tenant acme --yes
expect_rc 10 kt recover --tenant acme --key-a "$URI_C" --key-b "$URI_D" "$dep"
expect_rc 10 kt token destroy-key --token svc --label keytier-audit-anchor --pin-env PIN
expect_rc 10 kt approval register --name bob --pubkey "$KT_TMP/bob.der"
assert_eq registered "$(kt --json dep show --tenant acme "$dep" | jf .state)"

kt_log "a request: justification required, expiry at most approval.max_ttl"
expect_fail "keytier approval request: invalid argument: justification required: 1 to 512 printable bytes [KEYTIER_E_ARGS]" \
    kt approval request --op purge --tenant acme --justification "" --requester ops
expect_fail "keytier approval request: invalid argument: expiry of 32400 s: at most approval.max_ttl = 28800 s from now [KEYTIER_E_ARGS]" \
    kt approval request --op purge --tenant acme --justification x --requester ops --expires 9h
expect_rc 2 kt approval request --op decrypt-anything --tenant acme --justification x --requester ops
expect_fail "keytier approval request: invalid argument: a purge is tenant-wide: scope * [KEYTIER_E_ARGS]" \
    kt approval request --op purge --tenant acme --scope "$dep" --justification x --requester ops

kt_log "a request alone is not an approval"
req=$(kt approval request --op purge --tenant acme --justification "offboarding" --requester ops)
expect_fail "keytier purge: approval not granted yet: purge of acme (approval $req is not granted yet: an approver runs keytier approval grant $req) [KEYTIER_E_APPROVAL_PENDING]" \
    kt purge --tenant acme --yes --approval "$req"

kt_log "an operator marks the request granted in the store"
sql "UPDATE approvals SET state = 1, approver = 'alice', approver_key = '$(kt approval fingerprint --pubkey "$KT_TMP/alice.der")', signature = randomblob(64) WHERE id = '$req'"
expect_rc 10 kt purge --tenant acme --yes --approval "$req"
assert_contains "$KT_LAST_OUTPUT" "the signature of alice does not verify over the stored request) [KEYTIER_E_APPROVAL_INVALID]"

kt_log "self-approval"
req=$(kt approval request --op purge --tenant acme --justification "offboarding" --requester alice)
expect_fail "keytier approval grant: an approver may not grant their own request: alice requested this approval: another approver must grant it [KEYTIER_E_APPROVAL_SELF]" \
    kt approval grant "$req" --approver alice --key "$KEY_ALICE" --pin-env PIN
expect_rc 10 kt approval grant "$req" --approver alice --key "$KEY_ALICE" --pin-env PIN
# The same key pinned under a second name is the same person.
echo "approval.approver = alice-ops $(kt approval fingerprint --pubkey "$KT_TMP/alice.der")" >>"$KEYTIER_LIB_CONF"
req=$(kt approval request --op purge --tenant acme --justification "offboarding" --requester alice-ops)
expect_fail "keytier approval grant: an approver may not grant their own request: alice-ops requested this approval: another approver must grant it [KEYTIER_E_APPROVAL_SELF]" \
    kt approval grant "$req" --approver alice --key "$KEY_ALICE" --pin-env PIN

kt_log "a key that is not pinned: mallory's own, or mallory's in alice's name"
req=$(kt approval request --op purge --tenant acme --justification "offboarding" --requester ops)
expect_fail "keytier approval grant: not an approver: name and key fingerprint must be pinned in the configuration: mallory is not pinned in the configuration: add \`approval.approver = mallory sha256:HEX\` [KEYTIER_E_APPROVER]" \
    kt approval grant "$req" --approver mallory --key "$KEY_MALLORY" --pin-env PIN
expect_rc 10 kt approval grant "$req" --approver alice --key "$KEY_MALLORY" --pin-env PIN
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_APPROVAL_INVALID]"
assert_eq requested "$(kt --json approval list --tenant acme | jq -r "select(.id == \"$req\") | .state")"
expect_rc 10 kt approval register --name mallory --pubkey "$KT_TMP/mallory.der"
assert_contains "$KT_LAST_OUTPUT" "mallory: pin this key first"

kt_log "an approver row inserted into the store by hand"
sql "INSERT INTO approvers (name, spki, added) VALUES ('mallory', readfile('$KT_TMP/mallory.der'), 0)"
expect_rc 10 kt approval grant "$req" --approver mallory --key "$KEY_MALLORY" --pin-env PIN
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_APPROVER]"
kt_log "alice's stored key replaced by mallory's"
sql "UPDATE approvers SET spki = readfile('$KT_TMP/mallory.der') WHERE name = 'alice'"
expect_fail "keytier approval grant: not an approver: name and key fingerprint must be pinned in the configuration: approver alice: the key in the store is not the one the configuration pins [KEYTIER_E_APPROVER]" \
    kt approval grant "$req" --approver alice --key "$KEY_MALLORY" --pin-env PIN
sql "UPDATE approvers SET spki = readfile('$KT_TMP/alice.der') WHERE name = 'alice'"

kt_log "granted by bob (RSA-PSS in keytier's module), used once"
expect_ok kt --json approval grant "$req" --approver bob --key "$KEY_BOB" --pin-env PIN
assert_eq granted "$(jf .state <<<"$KT_LAST_OUTPUT")"
assert_eq bob "$(jf .approver <<<"$KT_LAST_OUTPUT")"
expect_rc 12 kt approval grant "$req" --approver bob --key "$KEY_BOB" --pin-env PIN
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_EXISTS]"
kt_log "another tenant, another operation, another scope"
expect_fail "keytier purge: approval is for another operation, tenant or scope: purge of globex (approval $req is for tenant acme, not globex) [KEYTIER_E_APPROVAL_SCOPE]" \
    kt purge --tenant globex --yes --approval "$req"
expect_fail "keytier recover: approval is for another operation, tenant or scope: recovery of acme (approval $req is for purge, not recover) [KEYTIER_E_APPROVAL_SCOPE]" \
    kt recover --tenant acme --key-a "$URI_C" --key-b "$URI_D" --approval "$req" "$dep"
rec=$(approve recover acme "$other")
expect_fail "keytier recover: approval is for another operation, tenant or scope: recovery of acme (approval $rec covers $other, not $dep) [KEYTIER_E_APPROVAL_SCOPE]" \
    kt recover --tenant acme --key-a "$URI_C" --key-b "$URI_D" --approval "$rec" "$dep"

kt_log "fields changed in the store after the grant"
saved=$(sql "SELECT justification || '|' || expires FROM approvals WHERE id = '$req'")
sql "UPDATE approvals SET justification = 'routine' WHERE id = '$req'"
expect_rc 10 kt purge --tenant acme --yes --approval "$req"
assert_contains "$KT_LAST_OUTPUT" "the signature of bob does not verify over the stored request) [KEYTIER_E_APPROVAL_INVALID]"
sql "UPDATE approvals SET justification = '${saved%|*}', expires = expires + 86400 WHERE id = '$req'"
expect_rc 10 kt purge --tenant acme --yes --approval "$req"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_APPROVAL_INVALID]"
sql "UPDATE approvals SET expires = ${saved#*|} WHERE id = '$req'"
sql "UPDATE approvals SET signature = CAST(zeroblob(256) AS BLOB) WHERE id = '$req'"
expect_rc 10 kt purge --tenant acme --yes --approval "$req"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_APPROVAL_INVALID]"
sql "UPDATE approvals SET state = 7 WHERE id = '$req'"
expect_rc 10 kt purge --tenant acme --yes --approval "$req"
assert_contains "$KT_LAST_OUTPUT" "has an unknown state 7) [KEYTIER_E_APPROVAL_INVALID]"

kt_log "revoked"
rev=$(approve purge acme '*' ops bob)
expect_ok kt approval revoke "$rev" --by alice --reason "ticket closed"
expect_fail "keytier purge: approval revoked: purge of acme (approval $rev was revoked) [KEYTIER_E_APPROVAL_REVOKED]" \
    kt purge --tenant acme --yes --approval "$rev"

kt_log "expired"
short=$(kt --json approval request --op purge --tenant acme --justification "short" --requester ops --expires 10s)
exp=$(jf .id <<<"$short")
kt approval grant "$exp" --approver alice --key "$KEY_ALICE" --pin-env PIN >/dev/null ||
    kt_fail "grant short approval"
until="$(jf .expires <<<"$short")"
while [ "$(date +%s)" -le "$until" ]; do sleep 1; done
expect_fail "keytier purge: approval expired: purge of acme (approval $exp expired: request a new one) [KEYTIER_E_APPROVAL_EXPIRED]" \
    kt purge --tenant acme --yes --approval "$exp"
expect_rc 10 kt purge --tenant acme --yes --approval "$exp"
assert_eq expired "$(kt --json approval list --tenant acme | jq -r "select(.id == \"$exp\") | .state")"
assert_eq 1 "$(kt --json audit list --activity "Approval expired" | grep -c "\"ApprovalId\":\"$exp\"")"

kt_log "a key in the service token"
expect_rc 10 kt token destroy-key --token svc --label keytier-audit-anchor --pin-env PIN
# The configuration the library finds by itself (no --config, no
# KEYTIER_LIB_CONF) gates it the same: the per-user file.
mkdir -p "$KT_TMP/xdg/keytier"
cp "$KEYTIER_LIB_CONF" "$KT_TMP/xdg/keytier/keytier-lib.conf"
chmod 600 "$KT_TMP/xdg/keytier/keytier-lib.conf"
(
    unset KEYTIER_LIB_CONF
    export XDG_CONFIG_HOME=$KT_TMP/xdg
    expect_rc 10 kt token destroy-key --token svc --label keytier-audit-anchor --pin-env PIN
    assert_contains "$KT_LAST_OUTPUT" "KEYTIER_E_APPROVAL_REQUIRED"
) || kt_fail "destroy-key in the service token without an approval, default configuration"
rm -r "$KT_TMP/xdg"
svc=$(approve service-key-destroy '*' no-such-key)
expect_fail "keytier token destroy-key: approval is for another operation, tenant or scope: destroying a key in the service token of * (approval $svc covers no-such-key, not keytier-audit-anchor) [KEYTIER_E_APPROVAL_SCOPE]" \
    kt token destroy-key --token svc --label keytier-audit-anchor --pin-env PIN --approval "$svc"
expect_rc 6 kt token destroy-key --token svc --label no-such-key --pin-env PIN --approval "$svc"
# A customer's own token needs no approval of the service.
expect_ok kt token destroy-key --token vault-a --label root-c --pin-env PIN

kt_log "a third approver: a key pair made by keytier approval keygen"
kt token init --label approver-carol --so-pin-env SO_PIN --pin-env PIN >/dev/null ||
    kt_fail "token init approver-carol"
expect_ok kt --json approval keygen --token pkcs11:token=approver-carol \
    --label carol --pubkey-out "$KT_TMP/carol.der" --pin-env PIN
KEY_CAROL=$(jf .key <<<"$KT_LAST_OUTPUT")
FPR_CAROL=$(jf .fingerprint <<<"$KT_LAST_OUTPUT")
assert_eq "$(kt approval fingerprint --pubkey "$KT_TMP/carol.der")" "$FPR_CAROL"
expect_rc 12 kt approval keygen --token pkcs11:token=approver-carol \
    --label carol --pubkey-out "$KT_TMP/carol2.der" --pin-env PIN
assert_contains "$KT_LAST_OUTPUT" "token 'approver-carol' already has a key 'carol' [KEYTIER_E_EXISTS]"
objs=$(pkcs11-tool --module "$KT_MODULE" --token-label approver-carol --login \
    --pin "$PIN" --list-objects --type privkey 2>/dev/null)
assert_contains "$objs" "Usage:      sign"
assert_contains "$objs" "never extractable"
assert_not_contains "$objs" "decrypt"
echo "approval.approver = carol $FPR_CAROL" >>"$KEYTIER_LIB_CONF"
expect_ok kt approval register --name carol --pubkey "$KT_TMP/carol.der" \
    --approval "$(approve change-approvers '*' carol ops bob)"
car=$(kt approval request --op service-key-destroy --tenant '*' --scope gone \
    --justification "carol's first" --requester ops)
expect_ok kt approval grant "$car" --approver carol --key "$KEY_CAROL" --pin-env PIN
expect_rc 6 kt token destroy-key --token svc --label gone --pin-env PIN --approval "$car"
assert_eq used "$(kt --json approval list | jq -r "select(.id == \"$car\") | .state")"

kt_log "the happy path: recover and purge with single-use approvals"
kt token destroy-key --token vault-a --label root-a --pin-env PIN >/dev/null || kt_fail "destroy a"
kt token destroy-key --token vault-b --label root-b --pin-env PIN >/dev/null || kt_fail "destroy b"
URI_E=$(kt token keygen --token vault-a --label root-e --type aes256 --pin-env PIN) || kt_fail "keygen e"
rec=$(approve recover acme "$dep" ops bob)
expect_ok kt --json recover --tenant acme --key-a "$URI_E" --key-b "$URI_D" --approval "$rec" "$dep"
expect_fail "keytier recover: single-use approval already used: recovery of acme (approval $rec was single-use and is used: request a new one) [KEYTIER_E_APPROVAL_USED]" \
    kt recover --tenant acme --key-a "$URI_E" --key-b "$URI_D" --approval "$rec" "$dep"
pur=$(approve purge acme '*')
expect_ok kt --json purge --tenant acme --yes --approval "$pur"
assert_eq 2 "$(jf .deps <<<"$KT_LAST_OUTPUT")"
expect_rc 10 kt purge --tenant acme --yes --approval "$pur"
assert_eq used "$(kt --json approval list --tenant acme | jq -r "select(.id == \"$pur\") | .state")"

kt_log "every step is in the audit log, naming the approval"
for a in "Approval requested" "Approval granted" "Approval used"; do
    assert_eq 1 "$(kt --json audit list --activity "$a" | grep -c "\"ApprovalId\":\"$pur\"")"
done
expect_ok kt --json audit list --activity "Approval revoked"
assert_contains "$KT_LAST_OUTPUT" "\"ApprovalId\":\"$rev\""
assert_contains "$KT_LAST_OUTPUT" '"Reason":"ticket closed"'
expect_ok kt --json audit list --activity "Approver registered"
assert_contains "$KT_LAST_OUTPUT" '"Scope":"bob"'
assert_not_contains "$(cat "$KT_TMP/store/keytier.db.audit.jsonl")" "$PIN"

kt_log "approval.required = no: runs, and the log says so"
cp "$KEYTIER_LIB_CONF" "$KT_TMP/open.conf"
echo "approval.required = no" >>"$KT_TMP/open.conf"
expect_ok kt --config "$KT_TMP/open.conf" purge --tenant globex --yes
expect_ok kt --json audit list --activity "Privileged operation without approval"
assert_contains "$KT_LAST_OUTPUT" '"Operation":"purge","OrganizationId":"globex"'
expect_ok kt audit verify
kt_log "ok"
