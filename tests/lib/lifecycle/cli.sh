#!/usr/bin/env bash
# keytier dep roll | assign | migrate | recover | purge | secret ...: the
# lifecycle commands on keytier's module, their JSON fields, exit codes and
# errors; data encrypted at the start reads back after each step.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
cli_setup
cli_tokens
trust_approvers # recover and purge need approvals
for t in vault-c vault-d; do
    kt token init --label "$t" --so-pin-env SO_PIN --pin-env PIN >/dev/null ||
        kt_fail "token init $t"
done
echo "pin.vault-c = env:PIN" >>"$KEYTIER_LIB_CONF"
echo "pin.vault-d = env:PIN" >>"$KEYTIER_LIB_CONF"
keygen() { kt token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }
URI_A2=$(keygen vault-a root-a2) || kt_fail "keygen root-a2"
URI_A3=$(keygen vault-a root-a3) || kt_fail "keygen root-a3"
URI_B3=$(keygen vault-b root-b3) || kt_fail "keygen root-b3"
URI_C=$(keygen vault-c root-c) || kt_fail "keygen root-c"
URI_D=$(keygen vault-d root-d) || kt_fail "keygen root-d"
URI_X=$(keygen vault-c root-x) || kt_fail "keygen root-x"
URI_Y=$(keygen vault-d root-y) || kt_fail "keygen root-y"

kt_log "a DEP, two mailboxes, data"
dep=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B" | jf .dep_id) || kt_fail "dep create"
for m in alice bob; do
    kt mailbox create --tenant acme --dep "$dep" "$m" >/dev/null || kt_fail "mailbox $m"
done
head -c 5000 /dev/urandom >"$KT_TMP/plain"
kt encrypt --tenant acme --mailbox alice -i "$KT_TMP/plain" -o "$KT_TMP/alice.kt" ||
    kt_fail "encrypt"
odep=$(kt --json dep create --tenant other --workload Exchange --key-a "$URI_X" \
    --key-b "$URI_Y" | jf .dep_id) || kt_fail "dep create other"
kt mailbox create --tenant other --dep "$odep" olga >/dev/null || kt_fail "mailbox olga"
kt encrypt --tenant other --mailbox olga -i "$KT_TMP/plain" -o "$KT_TMP/olga.kt" ||
    kt_fail "encrypt olga"
check_alice()
{
    expect_ok kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
    cmp -s "$KT_TMP/plain" "$KT_TMP/out" || kt_fail "alice's data differs ($1)"
}
check_alice "before"

kt_log "dep roll"
expect_fail "keytier dep roll: customer keys are in the same token: new customer key A $URI_B3 is in token 'vault-b', like customer key B $URI_B [KEYTIER_E_SAME_TOKEN]" \
    kt dep roll --tenant acme --key a --new-key "$URI_B3" "$dep"
expect_rc 12 kt dep roll --tenant acme --key a --new-key "$URI_B3" "$dep"
expect_fail "keytier dep roll: --key is a or b, not 'c' (see 'keytier dep roll --help') [KEYTIER_E_ARGS]" \
    kt dep roll --tenant acme --key c --new-key "$URI_A2" "$dep"
expect_rc 2 kt dep roll --tenant acme --key c --new-key "$URI_A2" "$dep"
expect_rc 6 kt dep roll --tenant acme --key a --new-key "pkcs11:token=vault-a;object=nope" "$dep"
expect_ok kt --json dep roll --tenant acme --key a --new-key "$URI_A2" "$dep"
r=$KT_LAST_OUTPUT
assert_eq "$dep" "$(jf .dep_id <<<"$r")"
assert_eq a "$(jf .key <<<"$r")"
assert_eq "$URI_A2" "$(jf .uri <<<"$r")"
assert_eq aes-key-wrap-pad "$(jf .wrap <<<"$r")"
assert_eq registered "$(jf .state <<<"$r")"
assert_eq "$URI_A2" "$(kt --json dep show --tenant acme "$dep" | jf .roots.a.uri)"
check_alice "after the roll"
kt token destroy-key --token vault-a --label root-a --pin-env PIN >/dev/null ||
    kt_fail "destroy old root-a"
check_alice "old version of key A destroyed"

kt_log "assign and migrate"
dep2=$(kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A3" \
    --key-b "$URI_B3" | jf .dep_id) || kt_fail "dep create 2"
expect_ok kt --json assign --tenant acme --all --dep "$dep2"
m=$KT_LAST_OUTPUT
mig=$(jf .migration_id <<<"$m")
assert_eq 2 "$(jf .total <<<"$m")"
assert_eq 0 "$(jf .done <<<"$m")"
assert_eq false "$(jf .finished <<<"$m")"
assert_eq all "$(jf .scope <<<"$m")"
assert_eq migrating "$(kt --json dep show --tenant acme "$dep2" | jf .state)"
expect_ok kt --json migrate --tenant acme --status
assert_eq "$mig" "$(jf .migration_id <<<"$KT_LAST_OUTPUT")"
expect_ok kt --json migrate --tenant acme
last=$(tail -1 <<<"$KT_LAST_OUTPUT")
assert_eq true "$(jf .finished <<<"$last")"
assert_eq 2 "$(jf .done <<<"$last")"
assert_eq 100 "$(jf '.percent | floor' <<<"$last")"
assert_eq 0 "$(jf '.eta_seconds | floor' <<<"$last")"
s=$(kt --json status --tenant acme --mailbox alice) || kt_fail "status"
assert_eq true "$(jf .encrypted <<<"$s")"
assert_eq "$dep2" "$(jf .dep_id <<<"$s")"
assert_eq registered "$(kt --json dep show --tenant acme "$dep2" | jf .state)"
check_alice "after the migration"
expect_ok kt migrate --tenant acme --status
assert_contains "$KT_LAST_OUTPUT" "progress   2/2 (100.0%) finished"
expect_fail "keytier migrate: no migration 00000000-0000-4000-8000-000000000000 for tenant acme [KEYTIER_E_NOT_FOUND]" \
    kt migrate --tenant acme 00000000-0000-4000-8000-000000000000
expect_rc 6 kt migrate --tenant acme 00000000-0000-4000-8000-000000000000
expect_ok kt assign --tenant acme --mailbox carol --dep "$dep2"
assert_contains "$KT_LAST_OUTPUT" "carol assigned to DEP $dep2 (no data yet: a new key under it)"
assert_eq "$dep2" "$(kt --json status --tenant acme --mailbox carol | jf .dep_id)"
expect_rc 2 kt assign --tenant acme --dep "$dep2"
expect_fail "keytier assign: object belongs to another tenant: DEP $dep2 does not belong to tenant other [KEYTIER_E_WRONG_TENANT]" \
    kt assign --tenant other --all --dep "$dep2"

kt_log "recover: both customer keys of the DEP lost"
kt token destroy-key --token vault-a --label root-a3 --pin-env PIN >/dev/null || kt_fail "destroy a3"
kt token destroy-key --token vault-b --label root-b3 --pin-env PIN >/dev/null || kt_fail "destroy b3"
expect_rc 4 kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
expect_rc 10 kt recover --tenant acme --key-a "$URI_C" --key-b "$URI_D" "$dep2"
ok_recover=$(approve recover acme "$dep2")
expect_ok kt --json recover --tenant acme --key-a "$URI_C" --key-b "$URI_D" \
    --approval "$ok_recover" "$dep2"
first=$(head -1 <<<"$KT_LAST_OUTPUT")
last=$(tail -1 <<<"$KT_LAST_OUTPUT")
dep3=$(jf .new_dep_id <<<"$first")
assert_eq "$dep2" "$(jf .old_dep_id <<<"$first")"
assert_eq recover "$(jf .operation <<<"$first")"
assert_eq true "$(jf .finished <<<"$last")"
assert_eq 3 "$(jf .done <<<"$last")"
assert_eq disabled "$(kt --json dep show --tenant acme "$dep2" | jf .state)"
assert_eq "$dep3" "$(kt --json status --tenant acme --mailbox alice | jf .dep_id)"
check_alice "after recovery"
expect_ok kt --json audit list --activity "Fallback to availability key"
assert_contains "$KT_LAST_OUTPUT" '"Operation":"recover"'
expect_ok kt audit verify

kt_log "secrets"
kt_conf_key=$(printf 'pw-%s' "$RANDOM")
printf '%s' "$kt_conf_key" >"$KT_TMP/secret"
expect_ok kt --json secret create --keyset conn --root "$URI_C" --rollover-after 0 --retire-after 0
assert_eq 1 "$(jf .current_version <<<"$KT_LAST_OUTPUT")"
expect_ok kt secret protect --keyset conn --context acct-1 -i "$KT_TMP/secret" -o "$KT_TMP/s1"
expect_ok kt --json secret rollover --keyset conn
assert_eq 2 "$(jf .current_version <<<"$KT_LAST_OUTPUT")"
expect_ok kt secret protect --keyset conn --context acct-1 -i "$KT_TMP/secret" -o "$KT_TMP/s2"
for f in s1 s2; do
    expect_ok kt secret unprotect --keyset conn --context acct-1 -i "$KT_TMP/$f" -o "$KT_TMP/back"
    cmp -s "$KT_TMP/secret" "$KT_TMP/back" || kt_fail "secret $f differs"
done
expect_rc 3 kt secret unprotect --keyset conn --context acct-2 -i "$KT_TMP/s1" -o "$KT_TMP/back"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_AUTH]"
[ ! -e "$KT_TMP/back.tmp" ] || kt_fail "partial output left"
expect_rc 6 kt secret show --keyset nope
expect_ok kt secret show --keyset conn
assert_contains "$KT_LAST_OUTPUT" "  current   version 2"

kt_log "purge"
expect_fail "keytier purge: purge destroys tenant acme's keys for good: confirm with --yes (see 'keytier purge --help') [KEYTIER_E_ARGS]" \
    kt purge --tenant acme
expect_rc 2 kt purge --tenant acme
expect_rc 10 kt purge --tenant acme --yes
expect_ok kt --json purge --tenant acme --yes --destroy-customer-keys \
    --approval "$(approve purge acme '*')"
p=$KT_LAST_OUTPUT
# Three DEPs (rolled, recovered-from, new); the recovered-from DEP's
# customer keys were gone already: A2, B and D are destroyed, C is kept
# (keyset conn's root: its secrets would be lost with it).
assert_eq 3 "$(jf .deps <<<"$p")"
assert_eq 3 "$(jf .tier_keys_deleted <<<"$p")"
assert_eq 3 "$(jf .availability_keys_destroyed <<<"$p")"
assert_eq 3 "$(jf .customer_keys_destroyed <<<"$p")"
assert_eq 1 "$(jf .keys_kept <<<"$p")"
assert_eq "root of keyset conn" "$(jq -r ".keys[] | select(.uri == \"$URI_C\") | .kept_because" <<<"$p")"
expect_ok kt secret unprotect --keyset conn --context acct-1 -i "$KT_TMP/s2" -o "$KT_TMP/back"
expect_rc 14 kt decrypt --tenant acme --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
expect_rc 14 kt decrypt --tenant acme --mailbox alice --internal index -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
assert_eq purged "$(kt --json dep show --tenant acme "$dep3" | jf .state)"
expect_ok kt decrypt --tenant other --mailbox olga -i "$KT_TMP/olga.kt" -o "$KT_TMP/out"
cmp -s "$KT_TMP/plain" "$KT_TMP/out" || kt_fail "other tenant's data differs"
expect_ok kt audit list --activity "Tenant purged"
assert_contains "$KT_LAST_OUTPUT" "acme"
expect_ok kt audit verify
kt_log "ok"
