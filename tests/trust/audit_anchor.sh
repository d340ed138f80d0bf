#!/usr/bin/env bash
# The audit anchor against an operator with write access to the log file
# and the store but no use of the service token's key (SECURITY.md "The
# audit log"), through the keytier CLI with the service token on keytier's
# module. Each attack below was reported intact (exit 0) before; now:
#   - laundering: edit a record, recompute the chain, delete the anchor
#     rows, let the service append: the append refuses to anchor, verify
#     names the removed anchor (exit 8);
#   - the log deleted with its anchor rows, the service starting a new log
#     at its path: verify names the log the service token registered there;
#   - the log emptied with its anchor rows deleted: named the same way;
#   - an emptied copy, with the configuration or --chain-only: "empty:
#     nothing verified" (exit 11), never intact; a shortened copy: the
#     records removed from its end (exit 8).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
# The anchor never lags here because a loaded machine is slow.  No cache:
# with a 10-minute deadline a refresh attempt could hold the cache's alert
# past expiry, which open refuses (each command here reads once anyway).
printf 'avail.cache_ttl_ms = 0\navail.call_deadline_ms = 600000\n' \
    >>"$KEYTIER_LIB_CONF"
cd "$KT_TMP"
log=$KT_TMP/store/keytier.db.audit.jsonl

sql()
{
    sqlite3 "$KT_TMP/store/keytier.db" "$1"
}

# One ordinary append of the service: a DEP created for tenant $1.
service_append()
{
    expect_ok kt dep create --tenant "$1" --workload Exchange \
        --key-a "$URI_A" --key-b "$URI_B"
}

# The forger's script: FILE with OrganizationId of record N set to VALUE
# and every PrevHash and Hash recomputed, exactly as the writer would (jq -c
# prints these records byte for byte as json-c wrote them).
forge()
{
    local file=$1 n=$2 value=$3 prev i=0 line body
    prev=0000000000000000000000000000000000000000000000000000000000000000
    while IFS= read -r line; do
        i=$((i + 1))
        [ "$i" -eq "$n" ] &&
            line=$(jq -c --arg v "$value" '.OrganizationId = $v' <<<"$line")
        body=$(jq -c --arg p "$prev" '.PrevHash = $p | del(.Hash)' <<<"$line")
        prev=$(printf '%s' "$body" | sha256sum | cut -c1-64)
        jq -c --arg h "$prev" '.Hash = $h' <<<"$body"
    done <"$file"
}

kt_log "five records, anchored"
for t in t1 t2 t3 t4 t5; do
    service_append "$t"
done
expect_ok kt audit verify
assert_eq "audit log $log: 5 records, hash chain intact, anchored at record 5" "$KT_LAST_OUTPUT"
log_id=$(head -1 "$log" | jf .Id)

kt_log "a shortened copy: the records removed from its end (exit 8)"
head -n 2 "$log" >short.jsonl
expect_rc 8 kt audit verify --log short.jsonl
assert_eq "keytier audit verify: short.jsonl: line 3: audit log altered: records 3..5 removed from the end: the log ends at line 2, its anchor is at record 5 [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"

kt_log "an emptied copy: empty, nothing verified (exit 11), with or without the anchor"
: >empty.jsonl
expect_rc 11 kt audit verify --log empty.jsonl
assert_eq "keytier audit verify: audit log empty: nothing verified: empty.jsonl holds no record [KEYTIER_E_AUDIT_EMPTY]" "$KT_LAST_OUTPUT"
expect_rc 11 kt audit verify --chain-only --log empty.jsonl
assert_eq "keytier audit verify: audit log empty: nothing verified: empty.jsonl holds no record [KEYTIER_E_AUDIT_EMPTY]" "$KT_LAST_OUTPUT"
kt --json audit verify --chain-only --log empty.jsonl >v.json 2>/dev/null || true
assert_eq 11 "$(jf .error.exit <v.json)"

kt_log "laundering: record 2 edited, chain recomputed, anchor rows deleted, then an append"
forge "$log" 2 evil >forged.jsonl
expect_ok kt audit verify --chain-only --log forged.jsonl
cat forged.jsonl >"$log"
sql "DELETE FROM audit_anchors"
service_append t6
assert_eq 6 "$(wc -l <"$log")"
# The append did not vouch for the rewritten log...
assert_eq 0 "$(sql 'SELECT count(*) FROM audit_anchors')"
assert_contains "$(cat lib.log)" "audit anchor refused: the log diverged from it"
assert_contains "$(cat lib.log)" "has 6 records and no anchor row though the service token registered it: the anchor was removed from the store"
# ...and verify names what was done.
expect_rc 8 kt audit verify
assert_eq "keytier audit verify: $log: audit log altered: the anchor of log $log_id was removed: the service token registered the log as anchored, the store has no anchor for it [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"
expect_rc 8 kt audit verify --log forged.jsonl
assert_contains "$KT_LAST_OUTPUT" "the anchor of log $log_id was removed"
# More appends change nothing.
service_append t7
assert_eq 0 "$(sql 'SELECT count(*) FROM audit_anchors')"
expect_rc 8 kt audit verify

kt_log "the log emptied and its anchor rows deleted: named, not empty and fine"
: >"$log"
expect_rc 8 kt audit verify
assert_eq "keytier audit verify: $log: line 1: audit log altered: $log is empty, but the service token registered log $log_id at this path: the log was emptied or deleted [KEYTIER_E_AUDIT_TAMPERED]" "$KT_LAST_OUTPUT"

kt_log "the log deleted with its anchor rows, the service starting a new one: named"
rm -f "$log"
sql "DELETE FROM audit_anchors"
service_append t8
assert_eq 1 "$(wc -l <"$log")"
assert_eq 1 "$(sql 'SELECT count(*) FROM audit_anchors')"
new_id=$(head -1 "$log" | jf .Id)
[ "$new_id" != "$log_id" ] || kt_fail "the new log has the old log's id"
expect_rc 8 kt audit verify
# The store knows two chains at that path now, the old one and the new:
# each is named.
assert_contains "$KT_LAST_OUTPUT" "keytier audit verify: $log: line 1: audit log altered: $log is not the log anchored at this path (the service token registered log $log_id there): replaced, or rewritten from its first record [KEYTIER_E_AUDIT_TAMPERED]"
assert_contains "$KT_LAST_OUTPUT" "2 chains: "
# The new log itself is anchored: a copy of it elsewhere verifies.
cp "$log" new-copy.jsonl
expect_ok kt audit verify --log new-copy.jsonl
assert_eq "audit log new-copy.jsonl: 1 records, hash chain intact, anchored at record 1" "$KT_LAST_OUTPUT"
kt_log "ok"
