#!/usr/bin/env bash
# DEP states that tell the truth, through the keytier CLI: `status` and
# `dep show` probe each root key (customer key A destroyed, B refused after
# a PIN change, the availability key destroyed), a roll killed between
# storing its new copy and reading it back is finished by the next
# `keytier decrypt`, and a purged tenant's data reads and shows as purged.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
echo "approval.required = no" >>"$KEYTIER_LIB_CONF"
keygen() { kt token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }
URI_A2=$(keygen vault-a root-a2) || kt_fail "keygen root-a2"
URI_A9=$(keygen vault-a root-a9) || kt_fail "keygen root-a9"
URI_B9=$(keygen vault-b root-b9) || kt_fail "keygen root-b9"
db=$KT_TMP/store/keytier.db

dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create"
expect_ok kt mailbox create --tenant acme --dep "$dep" alice
head -c 3000 /dev/urandom >"$KT_TMP/plain"
expect_ok kt encrypt --tenant acme --mailbox alice -i "$KT_TMP/plain" -o "$KT_TMP/alice.kt"
check_alice()
{
    expect_ok kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
    cmp -s "$KT_TMP/plain" "$KT_TMP/out" || kt_fail "alice's data differs ($1)"
}

kt_log "a roll killed after storing its new copy: the next decrypt finishes it"
# The rows a `keytier dep roll` killed between its store write and its
# read-back leaves: made from a real roll, its new copy moved back into the
# roll journal (started long ago) and the old copy restored.
row() { sqlite3 "$db" "SELECT quote(uri) || ', ' || quote(mech) || ', ' || quote(wrapped) || ', ' || quote(ident) FROM dep_roots WHERE dep_id = '$dep' AND slot = 0"; }
old=$(row)
expect_ok kt dep roll --tenant acme --key a --new-key "$URI_A2" "$dep"
new=$(row)
sqlite3 "$db" "UPDATE dep_roots SET (uri, mech, wrapped, ident) = ($old) WHERE dep_id = '$dep' AND slot = 0;
INSERT INTO dep_roll(dep_id, slot, uri, mech, wrapped, ident, started) SELECT '$dep', 0, column1, column2, column3, column4, 1 FROM (VALUES ($new));
UPDATE deps SET state = 2 WHERE dep_id = '$dep';" || kt_fail "journal rows"
assert_eq rolling "$(kt --json dep show "$dep" | jf .state)"
assert_eq "$URI_A" "$(kt --json dep show "$dep" | jf .roots.a.uri)"
check_alice "roll resumed"
assert_eq registered "$(kt --json dep show "$dep" | jf .state)"
assert_eq "$URI_A2" "$(kt --json dep show "$dep" | jf .roots.a.uri)"
assert_eq 0 "$(sqlite3 "$db" "SELECT count(*) FROM dep_roll")"
expect_ok kt audit list --activity "Customer key roll resumed"
assert_contains "$KT_LAST_OUTPUT" "$dep"

kt_log "health: all reachable"
expect_ok kt status --tenant acme --mailbox alice
assert_eq "mailbox 'alice' (Exchange): encrypted under DEP $dep (policy $(kt --json dep show "$dep" | jf .policy_id)), DEP registered
  customer key A    reachable
  customer key B    reachable
  availability key  present" "$KT_LAST_OUTPUT"

kt_log "health: A destroyed, B refused (PIN changed), availability key destroyed"
kt token destroy-key --token vault-a --label root-a2 --pin-env PIN >/dev/null ||
    kt_fail "destroy root-a2"
# the library's PIN for vault-b is no longer the token's
export NOT_THE_PIN=1234-not-it
sed -i 's/^pin.vault-b = .*/pin.vault-b = env:NOT_THE_PIN/' "$KEYTIER_LIB_CONF"
# without the library configuration: the service token is just a token
env -u KEYTIER_LIB_CONF "$KT_CLI" token destroy-key --token svc \
    --label "keytier-avail-$dep" --pin-env PIN >/dev/null ||
    kt_fail "destroy the availability key"
expect_ok kt status --tenant acme --mailbox alice
s=$KT_LAST_OUTPUT
assert_contains "$s" "DEP registered"
assert_contains "$s" "  customer key A    destroyed (root key not found: customer key A $URI_A2: no such key in token 'vault-a'"
assert_contains "$s" "  customer key B    refused ("
assert_contains "$s" "CKR_PIN_INCORRECT"
assert_contains "$s" "  availability key  missing (root key not found: availability key "
expect_ok kt --json status --tenant acme --mailbox alice
s=$KT_LAST_OUTPUT
assert_eq encrypted "$(jf .state <<<"$s")"
assert_eq false "$(jf .purged <<<"$s")"
assert_eq destroyed "$(jf .health.a.state <<<"$s")"
assert_eq KEYTIER_E_KEY_NOT_FOUND "$(jf .health.a.error <<<"$s")"
assert_eq refused "$(jf .health.b.state <<<"$s")"
assert_eq missing "$(jf .health.availability.state <<<"$s")"
expect_ok kt dep show --tenant acme "$dep"
assert_contains "$KT_LAST_OUTPUT" "  health
    customer key A    destroyed"
assert_contains "$KT_LAST_OUTPUT" "    availability key  missing"
assert_eq refused "$(kt --json dep show "$dep" | jf .health.b.state)"
expect_ok kt --json status --tenant acme
assert_eq destroyed "$(jf '.deps[0].health.a.state' <<<"$KT_LAST_OUTPUT")"
expect_ok kt status --tenant acme
assert_contains "$KT_LAST_OUTPUT" "    customer key B    refused"

kt_log "purged: status and decrypt say so"
sed -i 's/^pin.vault-b = .*/pin.vault-b = env:PIN/' "$KEYTIER_LIB_CONF"
expect_ok kt purge --tenant acme --yes
expect_ok kt status --tenant acme --mailbox alice
assert_eq "mailbox 'alice' (Exchange): purged (crypto-shredded): tenant acme was purged and its keys destroyed" "$KT_LAST_OUTPUT"
expect_ok kt --json status --tenant acme --mailbox alice
assert_eq purged "$(jf .state <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf .purged <<<"$KT_LAST_OUTPUT")"
expect_ok kt status --tenant acme
assert_contains "$KT_LAST_OUTPUT" ": purged (crypto-shredded)"
assert_eq null "$(kt --json dep show "$dep" | jq -r .health)"
expect_fail "keytier decrypt: mailbox 'alice' of tenant acme (Exchange): tenant purged: its keys were destroyed: alice of tenant acme is gone with them; what was encrypted under it is crypto-shredded and can never be decrypted [KEYTIER_E_PURGED]" \
    kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
expect_rc 14 kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
# another tenant's unknown mailbox is still just not encrypted
dep9=$(kt --json dep create --tenant globex --workload Exchange --key-a "$URI_A9" \
    --key-b "$URI_B9" | jf .dep_id) || kt_fail "dep create globex"
expect_ok kt status --tenant globex --mailbox nobody
assert_eq "mailbox 'nobody' (Exchange): not encrypted under a customer key" "$KT_LAST_OUTPUT"
expect_rc 6 kt decrypt --tenant globex --mailbox nobody -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
expect_ok kt audit verify
kt_log "ok"
