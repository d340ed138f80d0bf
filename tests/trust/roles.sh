#!/usr/bin/env bash
# Key roles, and a purge that cannot hurt another tenant, as the attacks
# they must stop: a tenant administrator (evil) who names keys that are not
# theirs as customer keys, and a purge of that tenant that would then
# destroy another tenant's (contoso's) keys.  Also: the keys keytier makes
# carry only the usages of their role (pkcs11-tool reads them back).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
trust_setup

keygen() { kt token keygen --token "$1" --label "$2" --type aes256 --pin-env PIN; }

# usage TOKEN LABEL: the "Usage:" of the key LABEL in TOKEN (keytier's
# module), as pkcs11-tool prints it.
usage()
{
    KT_P11_MODULE=$KT_MODULE kt_p11 --token-label "$1" --login --pin "$PIN" \
        --list-objects 2>/dev/null | awk -v l="$2" '
        /Object;/ { mine = 0 }
        $1 == "label:" { mine = ($2 == l) }
        mine && $1 == "Usage:" { sub(/^ *Usage: */, ""); print; exit }'
}

# contoso: three DEPs on one pair of roots, and a mailbox with data.
deps=()
for i in 1 2 3; do
    deps+=("$(kt --json dep create --tenant contoso --workload Exchange \
        --key-a "$URI_A" --key-b "$URI_B" | jf .dep_id)") || kt_fail "dep create"
done
c1=${deps[0]}
AVAIL_C=$(kt --json dep show --tenant contoso "$c1" | jf .roots.availability.uri)
kt mailbox create --tenant contoso --dep "$c1" alice >/dev/null || kt_fail "mailbox"
echo "contoso's mail" >"$KT_TMP/plain"
kt encrypt --tenant contoso --mailbox alice -i "$KT_TMP/plain" \
    -o "$KT_TMP/alice.kt" || kt_fail "encrypt"
URI_EA=$(keygen vault-a evil-a) || kt_fail "keygen evil-a"
URI_EB=$(keygen vault-b evil-b) || kt_fail "keygen evil-b"

kt_log "the keys keytier makes carry only their role's usages"
assert_eq "wrap, unwrap" "$(usage svc "keytier-avail-$c1")" "availability key"
# pkcs11-tool 0.23 shows "sign" for private keys only: "verify" alone is
# an HMAC key that neither encrypts, decrypts, wraps nor unwraps.
assert_eq "verify" "$(usage svc keytier-audit-anchor)" "audit anchor key"
# SoftHSM2 (set up for the approvers) gives a key sign and verify unless
# told otherwise.
kt token init --module "$SOFTHSM2_MODULE" --label cust-hsm --so-pin-env SO_PIN \
    --pin-env PIN >/dev/null || kt_fail "token init cust-hsm"
kt token keygen --module "$SOFTHSM2_MODULE" --token cust-hsm --label made \
    --type aes256 --pin-env PIN >/dev/null || kt_fail "keygen on SoftHSM2"
objs=$(env -u LD_PRELOAD pkcs11-tool --module "$SOFTHSM2_MODULE" \
    --token-label cust-hsm --login --pin "$PIN" --list-objects 2>&1)
assert_contains "$objs" "Usage:      wrap, unwrap"
assert_contains "$objs" "Access:     sensitive, always sensitive, never extractable, local"

kt_log "another tenant's availability key registered as a customer key"
expect_fail "keytier dep create: key has another role: it cannot be a customer key: customer key B $AVAIL_C: it is an availability key of keytier (label 'keytier-avail-$c1'), held by the service for a DEP; a customer key is the customer's own key in the customer's token [KEYTIER_E_KEY_ROLE]" \
    kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" --key-b "$AVAIL_C"
expect_rc 1 kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" --key-b "$AVAIL_C"
# The same key by another URI: the key is judged, not the text.
expect_rc 1 kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" \
    --key-b "pkcs11:token=svc;object=keytier-avail-$c1"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_KEY_ROLE]"

kt_log "a key in the service token registered as a customer key"
URI_S=$(keygen svc operator-key) || kt_fail "keygen in svc"
expect_fail "keytier dep create: key has another role: it cannot be a customer key: customer key B $URI_S: it is in the service token 'svc', which holds keytier's own keys (availability, audit anchor); a customer key lives in a token the customer controls [KEYTIER_E_KEY_ROLE]" \
    kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" --key-b "$URI_S"
expect_fail "keytier dep create: unsupported root key type: customer key B pkcs11:token=svc;object=keytier-audit-anchor: roots are AES secret keys or RSA private keys [KEYTIER_E_KEY_TYPE]" \
    kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" \
    --key-b "pkcs11:token=svc;object=keytier-audit-anchor"

kt_log "a key labelled as one of keytier's own, in the tenant's token"
URI_K=$(keygen vault-b keytier-audit-anchor) || kt_fail "keygen keytier-*"
expect_fail "keytier dep create: key has another role: it cannot be a customer key: customer key B $URI_K: it is one of keytier's own keys (label 'keytier-audit-anchor'; labels beginning \"keytier-\" are keytier's); a customer key is the customer's own key in the customer's token [KEYTIER_E_KEY_ROLE]" \
    kt dep create --tenant evil --workload Exchange --key-a "$URI_EA" --key-b "$URI_K"

kt_log "a roll to a key that is not a customer key"
expect_fail "keytier dep roll: key has another role: it cannot be a customer key: customer key B $URI_S: it is in the service token 'svc', which holds keytier's own keys (availability, audit anchor); a customer key lives in a token the customer controls [KEYTIER_E_KEY_ROLE]" \
    kt dep roll --tenant contoso --key b --new-key "$URI_S" "$c1"
assert_eq "$URI_B" "$(kt --json dep show --tenant contoso "$c1" | jf .roots.b.uri)"

kt_log "evil's DEP: contoso's root under another URI, then contoso's availability key"
ALT_A="pkcs11:token=vault-a;object=root-a;type=secret-key"
e1=$(kt --json dep create --tenant evil --workload Exchange --key-a "$ALT_A" \
    --key-b "$URI_EB" | jf .dep_id) || kt_fail "evil dep create"
AVAIL_E=$(kt --json dep show --tenant evil "$e1" | jf .roots.availability.uri)
# As a store written before the role checks holds it (no identity).
sql "UPDATE dep_roots SET uri = '$AVAIL_C', ident = NULL WHERE dep_id = '$e1' AND slot = 1"
first=$(printf '%s\n' "${deps[@]}" | LC_ALL=C sort | head -1)
why_a="customer key A of DEP $first (tenant contoso) and 2 more DEP root(s)"
why_b="availability key of DEP $c1 (tenant contoso)"
svc_keys()
{
    KT_P11_MODULE=$KT_MODULE kt_p11 --token-label svc --login --pin "$PIN" \
        --list-objects --type secrkey 2>/dev/null | grep -c "label: *keytier-avail-"
}
before=$(svc_keys)

kt_log "a dry run lists what would happen and changes nothing, without approval"
expect_ok kt --json purge --tenant evil --dry-run --destroy-customer-keys
p=$KT_LAST_OUTPUT
assert_eq true "$(jf .dry_run <<<"$p")"
assert_eq 2 "$(jf .keys_kept <<<"$p")"
assert_eq "kept|$why_a" "$(jq -r ".keys[] | select(.role == \"customer key A\") | .action + \"|\" + .kept_because" <<<"$p")"
assert_eq "kept|$why_b" "$(jq -r ".keys[] | select(.role == \"customer key B\") | .action + \"|\" + .kept_because" <<<"$p")"
assert_eq "would be destroyed" "$(jq -r ".keys[] | select(.role == \"availability key\") | .action" <<<"$p")"
assert_eq 0 "$(jf .availability_keys_destroyed <<<"$p")"
assert_eq "$before" "$(svc_keys)" "availability keys after the dry run"
assert_eq registered "$(kt --json dep show --tenant evil "$e1" | jf .state)"
expect_ok kt audit list --activity "Tenant purged"
assert_contains "$KT_LAST_OUTPUT" "0 of "
expect_ok kt purge --tenant evil --dry-run --destroy-customer-keys
assert_contains "$KT_LAST_OUTPUT" "customer key B $AVAIL_C: kept, still used: $why_b"
assert_contains "$KT_LAST_OUTPUT" "availability key $AVAIL_E: would be destroyed"
assert_contains "$KT_LAST_OUTPUT" "dry run: tenant evil not purged: 1 DEP(s); nothing was changed"

kt_log "purge --tenant evil --destroy-customer-keys keeps contoso's keys and says so"
expect_ok kt purge --tenant evil --yes --destroy-customer-keys \
    --approval "$(approve purge evil '*')"
assert_contains "$KT_LAST_OUTPUT" "customer key A $ALT_A: kept, still used: $why_a"
assert_contains "$KT_LAST_OUTPUT" "customer key B $AVAIL_C: kept, still used: $why_b"
assert_contains "$KT_LAST_OUTPUT" "availability key $AVAIL_E: destroyed"
assert_contains "$KT_LAST_OUTPUT" "tenant evil purged: 1 DEP(s), 1 availability key object(s) and 0 customer key object(s) destroyed, 2 kept (still used), 0 tier key(s) deleted"
assert_eq $((before - 1)) "$(svc_keys)" "availability keys after the purge"
assert_eq purged "$(kt --json dep show --tenant evil "$e1" | jf .state)"
expect_ok kt decrypt --tenant contoso --mailbox alice -i "$KT_TMP/alice.kt" -o "$KT_TMP/out"
cmp -s "$KT_TMP/plain" "$KT_TMP/out" || kt_fail "contoso's mail differs"

kt_log "the purge record names every key, the kept ones with why"
rec=$(kt --json audit list --activity "Tenant purged" --dep "$e1")
assert_eq "customer key A|$ALT_A|kept|$why_a" \
    "$(jq -r '.Keys[0] | .Role + "|" + .Uri + "|" + .Action + "|" + .KeptBecause' <<<"$rec")"
assert_eq "customer key B|$AVAIL_C|kept|$why_b" \
    "$(jq -r '.Keys[1] | .Role + "|" + .Uri + "|" + .Action + "|" + .KeptBecause' <<<"$rec")"
assert_eq "availability key|$AVAIL_E|destroyed" \
    "$(jq -r '.Keys[2] | .Role + "|" + .Uri + "|" + .Action' <<<"$rec")"
assert_eq false "$(jq -r .CustomerKeysDestroyed <<<"$rec")"
# Contoso's trail shows it too: each DEP that kept a key alive.
for d in "${deps[@]}"; do
    expect_ok kt --json audit list --activity "Key kept at purge" --dep "$d"
    assert_eq evil "$(jq -r .PurgedTenant <<<"$KT_LAST_OUTPUT" | head -1)"
done
expect_ok kt audit verify
kt_log "ok"
