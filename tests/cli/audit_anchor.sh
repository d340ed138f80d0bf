#!/usr/bin/env bash
# keytier audit verify with the keyed anchor (lib/audit.h "Anchor"), the
# service token on keytier's module.
#   - cutting the newest 1 or 3 records is named (exit 8), while
#     --chain-only passes and says the tail is not checked;
#   - a chain recomputed after an edit (every hash rewritten) is named;
#   - an anchor row moved back in the store without the token key fails
#     its MAC;
#   - the service token missing from the configuration during appends:
#     the records are written, verify exits 9 naming the unanchored ones;
#     the next append with the token back anchors them (exit 0).
# A frozen (SIGSTOP) service token: tests/lib/audit test_audit_anchor outage.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
# The anchor lags only where this test takes the service token away, never
# because a loaded machine is slow: a deadline it does not reach.
printf 'avail.cache_ttl_ms = 0\navail.call_deadline_ms = 600000\n' >>"$KEYTIER_LIB_CONF"
cd "$KT_TMP"
log=$KT_TMP/store/keytier.db.audit.jsonl

kt_log "six records: a DEP created, five user reads refused"
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)
kt mailbox create --tenant acme --dep "$dep" alice >/dev/null
head -c 1000 /dev/urandom >pt
kt encrypt --tenant acme --mailbox alice -i pt -o ct
kt token destroy-key --token vault-a --label root-a --pin-env PIN >/dev/null
kt token destroy-key --token vault-b --label root-b --pin-env PIN >/dev/null
for i in 1 2 3 4 5; do
    expect_rc 4 kt decrypt --tenant acme --mailbox alice -i ct -o out --request-id "r$i"
done
assert_eq 6 "$(wc -l <"$log")"
expect_ok kt audit verify
assert_eq "audit log $log: 6 records, hash chain intact, anchored at record 6" "$KT_LAST_OUTPUT"
expect_ok kt --json audit verify
assert_eq 6 "$(jf .anchored_seq <<<"$KT_LAST_OUTPUT")"
assert_eq 0 "$(jf .unanchored <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf .tail_checked <<<"$KT_LAST_OUTPUT")"
assert_eq "$(head -1 "$log" | jf .Id)" "$(jf .log_id <<<"$KT_LAST_OUTPUT")"

kt_log "the newest record cut: named; --chain-only cannot see it"
head -n 5 "$log" >cut1.jsonl
expect_rc 8 kt audit verify --log cut1.jsonl
assert_eq "keytier audit verify: cut1.jsonl: line 6: audit log altered: record 6 removed from the end: the log ends at line 5, its anchor is at record 6 [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"
expect_ok kt audit verify --log cut1.jsonl --chain-only
assert_eq "audit log cut1.jsonl: 5 records, hash chain intact; tail NOT checked (--chain-only: removed newest records and a recomputed chain need the anchor)" "$KT_LAST_OUTPUT"
expect_ok kt --json audit verify --log cut1.jsonl --chain-only
assert_eq false "$(jf .tail_checked <<<"$KT_LAST_OUTPUT")"
kt_log "the newest three records cut: named"
head -n 3 "$log" >cut3.jsonl
expect_rc 8 kt audit verify --log cut3.jsonl
assert_eq "keytier audit verify: cut3.jsonl: line 4: audit log altered: records 4..6 removed from the end: the log ends at line 3, its anchor is at record 6 [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"
kt --json audit verify --log cut3.jsonl 2>/dev/null >v.json || true
assert_eq false "$(jf .intact <v.json)"
assert_eq 4 "$(jf .bad_line <v.json)"
assert_eq 3 "$(jf .records <v.json)"
assert_eq 6 "$(jf .anchored_seq <v.json)"
expect_rc 2 kt audit verify --chain-only
assert_contains "$KT_LAST_OUTPUT" "--chain-only needs --log FILE"

kt_log "a forger rewrites record 2 and recomputes every hash: named"
# jq -c prints these records byte for byte as json-c wrote them
while IFS= read -r line; do
    assert_eq "$line" "$(jq -c . <<<"$line")" "jq serialisation"
done <"$log"
prev=0000000000000000000000000000000000000000000000000000000000000000
n=0
: >rehashed.jsonl
while IFS= read -r line; do
    n=$((n + 1))
    [ "$n" -eq 2 ] && line=$(jq -c '.RequestId = "r-forged"' <<<"$line")
    body=$(jq -c --arg p "$prev" '.PrevHash = $p | del(.Hash)' <<<"$line")
    prev=$(printf '%s' "$body" | sha256sum | cut -c1-64)
    jq -c --arg h "$prev" '.Hash = $h' <<<"$body" >>rehashed.jsonl
done <"$log"
cmp -s "$log" rehashed.jsonl && kt_fail "the forgery changed nothing"
expect_ok kt audit verify --log rehashed.jsonl --chain-only
expect_rc 8 kt audit verify --log rehashed.jsonl
assert_eq "keytier audit verify: rehashed.jsonl: line 6: audit log altered: line 6 is not the anchored record 6: the chain was rewritten at or before it [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"

kt_log "an anchor row moved back to the cut log's end without the key: MAC fails"
db=$KT_TMP/store/keytier.db
row=$(sqlite3 "$db" "SELECT seq || ' ' || hash || ' ' || hex(mac) FROM audit_anchors")
read -r a_seq a_hash a_mac <<<"$row"
assert_eq 6 "$a_seq"
h3=$(sed -n 3p "$log" | jf .Hash)
sqlite3 "$db" "UPDATE audit_anchors SET seq = 3, hash = '$h3'"
expect_rc 8 kt audit verify --log cut3.jsonl
assert_contains "$KT_LAST_OUTPUT" "keytier audit verify: cut3.jsonl: audit log altered: the audit anchor of cut3.jsonl (record 3) fails its MAC: the anchor was altered [KEYTIER_E_AUDIT_TAMPERED]"
sqlite3 "$db" "UPDATE audit_anchors SET seq = $a_seq, hash = '$a_hash', mac = X'$a_mac'"
expect_ok kt audit verify

kt_log "service token missing from the configuration: the same"
sed 's|^service_token = .*|service_token = pkcs11:token=nowhere|' "$KEYTIER_LIB_CONF" >down.conf
expect_rc 4 kt --config down.conf decrypt --tenant acme --mailbox alice -i ct -o out --request-id r-down1
expect_rc 4 kt --config down.conf decrypt --tenant acme --mailbox alice -i ct -o out --request-id r-down2
assert_contains "$(cat lib.log)" "audit anchor lags: service token unreachable"
assert_eq 8 "$(wc -l <"$log")"
expect_rc 6 kt --config down.conf audit verify
assert_contains "$KT_LAST_OUTPUT" "service token pkcs11:token=nowhere"
expect_rc 9 kt audit verify
assert_contains "$KT_LAST_OUTPUT" "2 of 8 records unanchored: "
assert_contains "$KT_LAST_OUTPUT" "records 7..8 are after the anchor (record 6)"
kt --json audit verify 2>/dev/null >v.json || true
assert_eq true "$(jf .intact <v.json)"
assert_eq 6 "$(jf .anchored_seq <v.json)"
assert_eq 2 "$(jf .unanchored <v.json)"
expect_ok kt audit verify --log "$log" --chain-only
expect_rc 4 kt decrypt --tenant acme --mailbox alice -i ct -o out --request-id r-up
expect_ok kt audit verify
assert_eq "audit log $log: 9 records, hash chain intact, anchored at record 9" "$KT_LAST_OUTPUT"
kt_log "ok"
