#!/usr/bin/env bash
# keytier audit verify across nodes (DESIGN.md §2 "Audit across nodes"):
# two nodes on one store, each with its own chain; verify without --log
# checks both (files where the nodes wrote them, in a directory, or listed),
# names a chain deleted, and a node configured onto another node's log is
# refused (KEYTIER_E_AUDIT_NODE) with nothing done.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
cd "$KT_TMP"
mkdir -m 700 chains
for n in n1 n2; do
    { cat "$KEYTIER_LIB_CONF"
      echo "node = $n"
      echo "avail.audit_log = $KT_TMP/chains/$n.audit.jsonl"
      echo "avail.cache_ttl_ms = 0"
      echo "avail.call_deadline_ms = 600000"; } >"$n.conf"
    chmod 600 "$n.conf"
done
kt --config n1.conf dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" >/dev/null
kt --config n2.conf dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" >/dev/null
kt --config n1.conf dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B" >/dev/null

kt_log "every record names its node and a global index"
assert_eq "n1 1|n1 3" "$(jq -r '"\(.Node) \(.GlobalIndex)"' chains/n1.audit.jsonl | paste -sd'|')"
assert_eq "n2 2" "$(jq -r '"\(.Node) \(.GlobalIndex)"' chains/n2.audit.jsonl)"

kt_log "verify: both chains, from any node"
expect_ok kt --config n2.conf audit verify
assert_contains "$KT_LAST_OUTPUT" "audit log $KT_TMP/chains/n1.audit.jsonl: 2 records, hash chain intact, anchored at record 2 (node n1, global indices 1..3)"
assert_contains "$KT_LAST_OUTPUT" "audit log $KT_TMP/chains/n2.audit.jsonl: 1 records, hash chain intact, anchored at record 1 (node n2, global indices 2..2)"
assert_contains "$KT_LAST_OUTPUT" "2 chains: 3 records, 3 with a global index, the last index taken 3, 0 unused"
kt --config n1.conf --json audit verify >v.json
assert_eq "true|n1 n2|3" "$(jq -r '[.intact, ([.chains[].node] | join(" ")), .highest_index] | map(tostring) | join("|")' v.json)"

kt_log "files from a directory, or listed"
mkdir -m 700 copies
cp chains/n1.audit.jsonl copies/
cp chains/n2.audit.jsonl copies/other-name.jsonl
expect_rc 8 kt --config n1.conf audit verify --dir copies
assert_contains "$KT_LAST_OUTPUT" "node n2's chain (log "
assert_contains "$KT_LAST_OUTPUT" "is missing: no file at copies/n2.audit.jsonl (deleted or moved)"
expect_ok kt --config n1.conf audit verify --file copies/n1.audit.jsonl --file copies/other-name.jsonl
assert_contains "$KT_LAST_OUTPUT" "audit log copies/other-name.jsonl: 1 records, hash chain intact"

kt_log "a chain deleted: named (exit 8)"
mv chains/n2.audit.jsonl n2.saved
expect_rc 8 kt --config n1.conf audit verify
assert_contains "$KT_LAST_OUTPUT" "is missing: no file at $KT_TMP/chains/n2.audit.jsonl (deleted or moved) [KEYTIER_E_AUDIT_TAMPERED]"
mv n2.saved chains/n2.audit.jsonl
expect_ok kt --config n1.conf audit verify

kt_log "a node on another node's log: refused, nothing done"
sed "s|^node = n2|node = n3|; s|chains/n2.audit|chains/n1.audit|" n2.conf >n3.conf
chmod 600 n3.conf
expect_rc 1 kt --config n3.conf dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B"
assert_contains "$KT_LAST_OUTPUT" "is another node's chain, not node n3's: give each node its own avail.audit_log"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_AUDIT_NODE]"
assert_eq 3 "$(kt --config n1.conf --json dep list --tenant acme | jq -s length)"
assert_eq 2 "$(wc -l <chains/n1.audit.jsonl)"
expect_ok kt --config n1.conf audit verify
kt_log "ok"
