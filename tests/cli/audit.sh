#!/usr/bin/env bash
# keytier audit list | verify, with the records a revocation makes: a user
# read refused (exit 4, "access revoked", no plaintext) and an internal
# read served by the availability key; filters; an edited, removed or
# forged line named by verify (exit 8).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
# Every read asks the tokens (a cached DEP key would hide the revocation).
echo "avail.cache_ttl_ms = 0" >>"$KEYTIER_LIB_CONF"
# The audit anchor's token call never misses its deadline here.
echo "avail.call_deadline_ms = 600000" >>"$KEYTIER_LIB_CONF"
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)
kt mailbox create --tenant acme --dep "$dep" alice >/dev/null
cd "$KT_TMP"
head -c 100000 /dev/urandom >pt
kt encrypt --tenant acme --mailbox alice -i pt -o ct

kt_log "one customer key destroyed: still read through the other"
kt token destroy-key --token vault-a --label root-a --pin-env PIN >/dev/null
kt decrypt --tenant acme --mailbox alice -i ct -o out1 || kt_fail "read with key B"
assert_files_eq pt out1
kt_log "both destroyed: a user read is refused, nothing written"
kt token destroy-key --token vault-b --label root-b --pin-env PIN >/dev/null
expect_rc 4 kt decrypt --tenant acme --mailbox alice -i ct -o out2 --request-id r-user
assert_contains "$KT_LAST_OUTPUT" "keytier decrypt: mailbox 'alice' of tenant acme (Exchange): access revoked: the customer keys refused: DEP $dep: [A] root key not found: customer key A $URI_A: no such key in token 'vault-a'; [B] root key not found: customer key B $URI_B: no such key in token 'vault-b' [KEYTIER_E_REVOKED]"
[ ! -e out2 ] || kt_fail "plaintext written after revocation"
rc=0
out=$(kt decrypt --tenant acme --mailbox alice -i ct 2>/dev/null) || rc=$?
assert_eq 4 "$rc" "exit to stdout"
assert_eq "" "$out" "plaintext on stdout after revocation"
kt_log "an internal read still works through the availability key"
expect_ok kt decrypt --tenant acme --mailbox alice -i ct -o out3 --internal index --request-id r-int
assert_files_eq pt out3

kt_log "audit list: every record, JSON lines as stored"
log=$(kt --json audit verify | jf .log)
assert_eq "$KT_TMP/store/keytier.db.audit.jsonl" "$log"
expect_ok kt --json audit list
assert_eq "$(cat "$log")" "$(grep -v ' records shown ' <<<"$KT_LAST_OUTPUT")" "records as stored"
kt --json audit list 2>/dev/null >all.jsonl
assert_eq "DEP created|Request denied: customer keys revoked|Request denied: customer keys revoked|Fallback to availability key" \
    "$(jq -r .Activity all.jsonl | paste -sd'|')"
kt_log "the fallback record, field by field"
kt --json audit list --activity "Fallback to availability key" 2>/dev/null >fb.jsonl
assert_eq 1 "$(wc -l <fb.jsonl)"
assert_eq CustomerKeyServiceEncryption "$(jf .RecordType <fb.jsonl)"
assert_eq Exchange "$(jf .Workload <fb.jsonl)"
assert_eq acme "$(jf .OrganizationId <fb.jsonl)"
assert_eq "$dep" "$(jf .DataEncryptionPolicyId <fb.jsonl)"
assert_eq "$(kt --json dep show --tenant acme "$dep" | jf .policy_id)" "$(jf .PolicyId <fb.jsonl)"
assert_eq r-int "$(jf .RequestId <fb.jsonl)"
assert_eq internal "$(jf .RequestKind <fb.jsonl)"
assert_eq index "$(jf .Operation <fb.jsonl)"
assert_eq "A denied $URI_A|B denied $URI_B" \
    "$(jq -r '.CustomerKeyErrors[] | "\(.Key) \(.Class) \(.Uri)"' fb.jsonl | paste -sd'|')"
kt --json audit list --activity "Request denied: customer keys revoked" 2>/dev/null >den.jsonl
assert_eq 2 "$(wc -l <den.jsonl)"
assert_eq r-user "$(head -1 den.jsonl | jf .RequestId)"
assert_eq user "$(head -1 den.jsonl | jf .RequestKind)"
kt_log "audit list: human lines and filters"
expect_ok kt audit list
assert_contains "$KT_LAST_OUTPUT" "  Fallback to availability key  tenant=acme  dep=$dep  kind=internal/index  request=r-int  A="
assert_contains "$KT_LAST_OUTPUT" "4 of 4 records shown ($log)"
expect_ok kt audit list --dep "$dep" --since 2000-01-01
assert_contains "$KT_LAST_OUTPUT" "4 of 4 records shown"
expect_ok kt audit list --dep 00000000-0000-4000-8000-000000000000
assert_contains "$KT_LAST_OUTPUT" "0 of 4 records shown"
expect_ok kt audit list --since 2999-01-01
assert_contains "$KT_LAST_OUTPUT" "0 of 4 records shown"
expect_ok kt audit list --activity "DEP created" --log "$log"
assert_contains "$KT_LAST_OUTPUT" "1 of 4 records shown"
expect_fail "keytier audit list: cannot read audit log $KT_TMP/none.jsonl: No such file or directory [KEYTIER_E_IO]" \
    kt audit list --log "$KT_TMP/none.jsonl"
expect_rc 7 kt audit list --log "$KT_TMP/none.jsonl"

kt_log "audit verify: intact"
expect_ok kt audit verify
assert_eq "audit log $log: 4 records, hash chain intact, anchored at record 4" "$KT_LAST_OUTPUT"
expect_ok kt --json audit verify --log "$log"
assert_eq true "$(jf .intact <<<"$KT_LAST_OUTPUT")"
assert_eq 4 "$(jf .records <<<"$KT_LAST_OUTPUT")"
kt_log "audit verify: an edited line is named (exit 8)"
cp "$log" edited.jsonl
sed -i '4s/"index"/"indey"/' edited.jsonl
cmp -s "$log" edited.jsonl && kt_fail "edit changed nothing"
expect_rc 8 kt audit verify --log edited.jsonl
assert_contains "$KT_LAST_OUTPUT" "keytier audit verify: edited.jsonl: line 4: "
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_AUDIT_TAMPERED]"
kt --json audit verify --log edited.jsonl 2>/dev/null >v.json || true
assert_eq false "$(jf .intact <v.json)"
assert_eq 4 "$(jf .bad_line <v.json)"
assert_eq 3 "$(jf .records <v.json)"
kt_log "audit verify: a removed line is named"
sed '2d' "$log" >removed.jsonl
expect_rc 8 kt audit verify --log removed.jsonl
assert_contains "$KT_LAST_OUTPUT" "keytier audit verify: removed.jsonl: line 2: "
kt_log "audit verify: a forged line is named"
{ cat "$log"; tail -1 "$log"; } >forged.jsonl
expect_rc 8 kt audit verify --log forged.jsonl
assert_contains "$KT_LAST_OUTPUT" "keytier audit verify: forged.jsonl: line 5: "
printf 'not json\n' >>edited2.jsonl
expect_rc 8 kt audit list --log edited2.jsonl
assert_contains "$KT_LAST_OUTPUT" "keytier audit list: audit log edited2.jsonl: line 1 is not a JSON object (run keytier audit verify)"
kt_log "ok"
