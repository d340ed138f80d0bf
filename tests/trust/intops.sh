#!/usr/bin/env bash
# Internal operations are a fixed set whose use of the availability key is
# decided per workload, and a files-workload read through the availability
# key needs a live approval (SECURITY.md "Internal operations"). Each step
# is an attack that must fail with the exact error: a caller naming an
# operation of its own making to read revoked data, an internal read
# overriding a revocation on the files shape, a files-workload recovery
# read without an approval or with one for something else.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
trust_setup
# Every read asks the tokens; a files-shaped workload with an AES
# availability key (SharePoint's is RSA-2048, slower to make).
{
    echo "avail.cache_ttl_ms = 0"
    echo "workload.Files.shape = files"
} >>"$KEYTIER_LIB_CONF"
cd "$KT_TMP"
head -c 70000 /dev/urandom >pt

mdep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create Exchange"
fdep=$(kt --json dep create --tenant acme --workload Files --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create Files"
kt mailbox create --tenant acme --dep "$mdep" alice >/dev/null || kt_fail "mailbox"
kt site create --tenant acme --dep "$fdep" finance >/dev/null || kt_fail "site"
kt encrypt --tenant acme --mailbox alice -i pt -o mail.kt || kt_fail "encrypt mail"
kt encrypt --tenant acme --site finance --blob q3 --workload Files -i pt \
    -o blob.kt || kt_fail "encrypt blob"
# The customer revokes: both roots destroyed in its vaults.
kt token destroy-key --token vault-a --label root-a --pin-env PIN >/dev/null ||
    kt_fail "destroy root-a"
kt token destroy-key --token vault-b --label root-b --pin-env PIN >/dev/null ||
    kt_fail "destroy root-b"

# files_read OUT [ARGS...]: decrypts the blob into OUT.
files_read()
{
    local out=$1
    shift
    kt decrypt --tenant acme --site finance --blob q3 --workload Files \
        -i blob.kt -o "$out" "$@"
}
fallbacks()
{
    kt --json audit list --activity "Fallback to availability key" |
        jq -r "select(.Workload == \"$1\") | .DataEncryptionPolicyId" | wc -l
}
uses()
{
    kt --json audit list --activity "Approval used" | grep -c "\"ApprovalId\":\"$1\""
}
state()
{
    kt --json approval list --tenant "$2" | jq -r "select(.id == \"$1\") | .state"
}
files_revoked="keytier decrypt: site 'finance' of tenant acme (Files): access revoked: the customer keys refused: DEP $fdep: [A] root key not found: customer key A $URI_A: no such key in token 'vault-a'; [B] root key not found: customer key B $URI_B: no such key in token 'vault-b' [KEYTIER_E_REVOKED]"

kt_log "an internal operation of the caller's making is a usage error"
valid="one of move, index, malware-scan, ediscovery, dlp, recover"
expect_fail "keytier decrypt: --internal: internal operation 'foo': $valid (see 'keytier decrypt --help') [KEYTIER_E_ARGS]" \
    kt decrypt --tenant acme --mailbox alice --internal foo -i mail.kt -o out
expect_rc 2 kt decrypt --tenant acme --mailbox alice --internal foo -i mail.kt -o out
[ ! -e out ] || kt_fail "plaintext written for --internal foo"
# the library's own re-encryption is not a caller's to name
expect_fail "keytier decrypt: --internal: internal operation 'migrate': $valid (see 'keytier decrypt --help') [KEYTIER_E_ARGS]" \
    kt decrypt --tenant acme --mailbox alice --internal migrate -i mail.kt -o out
expect_rc 2 kt decrypt --tenant acme --mailbox alice --internal "" -i mail.kt -o out
expect_rc 2 kt decrypt --tenant acme --mailbox alice --internal Index -i mail.kt -o out
[ ! -e out ] || kt_fail "plaintext written for an unknown operation"
assert_eq 0 "$(fallbacks Exchange)" "fallback records before any valid internal read"

kt_log "mail shape: the service's indexing still reads after revocation, audited"
expect_ok kt --json decrypt --tenant acme --mailbox alice --internal index \
    -i mail.kt -o mail.out --request-id r-index
assert_eq index "$(jf .internal <<<"$KT_LAST_OUTPUT")"
assert_files_eq pt mail.out
assert_eq 1 "$(fallbacks Exchange)"

kt_log "files shape: an internal operation never overrides a revocation"
expect_fail "$files_revoked" files_read out --internal index
expect_rc 4 files_read out --internal index
# not even where outage fallback is switched on for the workload
cp "$KEYTIER_LIB_CONF" fb.conf
echo "avail.outage_fallback.Files = yes" >>fb.conf
for op in index move malware-scan ediscovery dlp; do
    expect_fail "$files_revoked" kt --config fb.conf decrypt --tenant acme \
        --site finance --blob q3 --workload Files -i blob.kt -o out \
        --internal "$op"
done
# nor with an approval of the availability-key read; it stays unused
multi=$(kt approval request --op files-availability-read --tenant acme \
    --scope "$fdep" --justification "ticket 4711: restore q3" \
    --requester ops --multi-use) || kt_fail "request multi-use"
kt approval grant "$multi" --approver alice --key "$KEY_ALICE" --pin-env PIN \
    >/dev/null || kt_fail "grant multi-use"
expect_rc 4 kt --config fb.conf decrypt --tenant acme --site finance --blob q3 \
    --workload Files -i blob.kt -o out --internal index --approval "$multi"
# a user read: revocation bites, approval or not
expect_fail "$files_revoked" files_read out --approval "$multi"
[ ! -e out ] || kt_fail "plaintext written after revocation"
assert_eq 0 "$(uses "$multi")" "approval used by a refused read"
assert_eq 0 "$(fallbacks Files)"

kt_log "files shape: recovery through the availability key needs an approval"
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): this operation needs a live approval (--approval ID): a files-workload read through the availability key of acme needs an approval: keytier approval request --op files-availability-read --tenant acme --scope $fdep, granted by an approver, then --approval ID [KEYTIER_E_APPROVAL_REQUIRED]" \
    files_read out --internal recover
expect_rc 10 files_read out --internal recover
rc=0
plain=$(kt decrypt --tenant acme --site finance --blob q3 --workload Files \
    -i blob.kt --internal recover 2>/dev/null) || rc=$?
assert_eq 10 "$rc" "exit to stdout"
assert_eq "" "$plain" "plaintext on stdout without an approval"
expect_rc 10 kt --config fb.conf decrypt --tenant acme --site finance \
    --blob q3 --workload Files -i blob.kt -o out --internal recover

kt_log "requested, never granted"
pending=$(kt approval request --op files-availability-read --tenant acme \
    --scope "$fdep" --justification "ticket 4712" --requester ops) ||
    kt_fail "request pending"
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval not granted yet: a files-workload read through the availability key of acme (approval $pending is not granted yet: an approver runs keytier approval grant $pending) [KEYTIER_E_APPROVAL_PENDING]" \
    files_read out --internal recover --approval "$pending"

kt_log "an approval for another tenant, another DEP, another operation"
globex=$(approve files-availability-read globex "$fdep")
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval is for another operation, tenant or scope: a files-workload read through the availability key of acme (approval $globex is for tenant globex, not acme) [KEYTIER_E_APPROVAL_SCOPE]" \
    files_read out --internal recover --approval "$globex"
maildep=$(approve files-availability-read acme "$mdep")
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval is for another operation, tenant or scope: a files-workload read through the availability key of acme (approval $maildep covers $mdep, not $fdep) [KEYTIER_E_APPROVAL_SCOPE]" \
    files_read out --internal recover --approval "$maildep"
recover=$(approve recover acme "$fdep")
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval is for another operation, tenant or scope: a files-workload read through the availability key of acme (approval $recover is for recover, not files-availability-read) [KEYTIER_E_APPROVAL_SCOPE]" \
    files_read out --internal recover --approval "$recover"
expect_rc 6 files_read out --internal recover --approval no-such-approval
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_NOT_FOUND]"
[ ! -e out ] || kt_fail "plaintext written with a wrong approval"

kt_log "revoked, and expired by itself"
rev=$(approve files-availability-read acme "$fdep")
kt approval revoke "$rev" --by alice --reason "restored from backup" >/dev/null ||
    kt_fail "revoke"
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval revoked: a files-workload read through the availability key of acme (approval $rev was revoked) [KEYTIER_E_APPROVAL_REVOKED]" \
    files_read out --internal recover --approval "$rev"
short=$(kt --json approval request --op files-availability-read --tenant acme \
    --scope "$fdep" --justification "ticket 4713" --requester ops \
    --expires 5s) || kt_fail "request short"
exp=$(jf .id <<<"$short")
kt approval grant "$exp" --approver bob --key "$KEY_BOB" --pin-env PIN \
    >/dev/null || kt_fail "grant short approval"
until="$(jf .expires <<<"$short")"
while [ "$(date +%s)" -le "$until" ]; do sleep 1; done
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): approval expired: a files-workload read through the availability key of acme (approval $exp expired: request a new one) [KEYTIER_E_APPROVAL_EXPIRED]" \
    files_read out --internal recover --approval "$exp"
[ ! -e out ] || kt_fail "plaintext written with a dead approval"
assert_eq 0 "$(fallbacks Files)"

kt_log "a live single-use approval: one read, named in its fallback record"
once=$(approve files-availability-read acme "$fdep" ops bob)
expect_ok kt --json decrypt --tenant acme --site finance --blob q3 \
    --workload Files -i blob.kt -o out --internal recover --approval "$once" \
    --request-id r-recover
assert_eq "$once" "$(jf .approval <<<"$KT_LAST_OUTPUT")"
assert_files_eq pt out
rm -f out
rec=$(kt --json audit list --activity "Fallback to availability key" |
    jq -c 'select(.Workload == "Files")')
assert_eq "$once" "$(jf .ApprovalId <<<"$rec")"
assert_eq recover "$(jf .Operation <<<"$rec")"
assert_eq r-recover "$(jf .RequestId <<<"$rec")"
assert_eq "$fdep" "$(jf .DataEncryptionPolicyId <<<"$rec")"
assert_eq 1 "$(uses "$once")"
assert_eq used "$(state "$once" acme)"
expect_fail "keytier decrypt: site 'finance' of tenant acme (Files): single-use approval already used: a files-workload read through the availability key of acme (approval $once was single-use and is used: request a new one) [KEYTIER_E_APPROVAL_USED]" \
    files_read out --internal recover --approval "$once"
[ ! -e out ] || kt_fail "plaintext written with a spent approval"

kt_log "a multi-use approval: each read uses it again, audited"
expect_ok files_read out1 --internal recover --approval "$multi"
expect_ok files_read out2 --internal recover --approval "$multi"
assert_files_eq pt out2
assert_eq 2 "$(uses "$multi")"
assert_eq granted "$(state "$multi" acme)"
assert_eq 3 "$(fallbacks Files)"

kt_log "the mail shape's recovery needs no approval of a files read"
expect_ok kt decrypt --tenant acme --mailbox alice --internal recover \
    -i mail.kt -o mail.rec
assert_files_eq pt mail.rec
expect_ok kt audit verify
kt_log "ok"
