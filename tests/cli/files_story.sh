#!/usr/bin/env bash
# The files workload end to end through the CLI: tenant acme in two
# regions (eu, us), one SharePoint DEP per region with customer key A on
# SoftHSM2 and key B on keytier's module, each DEP with its tenant
# intermediate key (TIK); a second DEP in a region refused; sites and
# blobs written per region; a roll of eu's key A; eu offboarded to a
# service-managed key with an approval (refused without one), eu's
# customer keys destroyed, every blob still readable, new sites in eu;
# status showing service-managed keys for eu and customer keys for us.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
. "$KT_SOURCE_ROOT/tests/trust/trust_env.sh"
trust_setup # keytier tokens vault-a, vault-b, svc; approvers on SoftHSM2

# Customer key A of each region on SoftHSM2, key B on keytier's module.
for r in eu us; do
    kt token init --module "$SOFTHSM2_MODULE" --label "cust-a-$r" \
        --so-pin-env SO_PIN --pin-env PIN >/dev/null ||
        kt_fail "softhsm2 token cust-a-$r"
    echo "pin.cust-a-$r = env:PIN" >>"$KEYTIER_LIB_CONF"
done
key_a_eu=$(kt token keygen --module "$SOFTHSM2_MODULE" --token cust-a-eu \
    --label a-eu --type aes256 --pin-env PIN) || kt_fail "keygen a-eu"
key_a_us=$(kt token keygen --module "$SOFTHSM2_MODULE" --token cust-a-us \
    --label a-us --type aes256 --pin-env PIN) || kt_fail "keygen a-us"
key_b_eu=$(kt token keygen --token vault-b --label b-eu --type aes256 \
    --pin-env PIN) || kt_fail "keygen b-eu"
key_b_us=$(kt token keygen --token vault-b --label b-us --type aes256 \
    --pin-env PIN) || kt_fail "keygen b-us"

kt_log "one files DEP per tenant and region"
dep_eu=$(kt --json dep create --tenant acme --workload SharePoint \
    --region eu --key-a "$key_a_eu" --key-b "$key_b_eu" | jf .dep_id) ||
    kt_fail "dep create eu"
out=$(kt --json dep show "$dep_eu")
[ "$(jf .region <<<"$out")" = eu ] || kt_fail "region of eu: $out"
tik_eu=$(jf .tik_id <<<"$out") || kt_fail "no TIK: $out"
dep_us=$(kt --json dep create --tenant acme --workload SharePoint \
    --region us --key-a "$key_a_us" --key-b "$key_b_us" | jf .dep_id) ||
    kt_fail "dep create us"
expect_rc 12 kt dep create --tenant acme --workload SharePoint --region eu \
    --key-a "$key_a_us" --key-b "$key_b_us"
grep -q "KEYTIER_E_DEP_REGION" <<<"$KT_LAST_OUTPUT" ||
    kt_fail "second eu DEP: $KT_LAST_OUTPUT"
grep -q "$dep_eu" <<<"$KT_LAST_OUTPUT" ||
    kt_fail "the error names the eu DEP: $KT_LAST_OUTPUT"
expect_rc 2 kt dep create --tenant acme --workload Exchange --region eu \
    --key-a "$key_a_us" --key-b "$key_b_us"
out=$(kt dep list --tenant acme)
grep -E "^$dep_eu .* eu +-$" <<<"$out" >/dev/null ||
    kt_fail "dep list: region column: $out"
grep -E "^$dep_us .* us +-$" <<<"$out" >/dev/null ||
    kt_fail "dep list: region column: $out"

kt_log "sites and blobs per region, the site under its region's TIK"
for r in eu us; do
    for s in 1 2; do
        kt site create --tenant acme --region "$r" "$r-site-$s" >/dev/null ||
            kt_fail "site create $r-site-$s"
        printf 'blob %s of %s\n' "$s" "$r" >"$KT_TMP/$r-$s.txt"
        kt encrypt --tenant acme --site "$r-site-$s" --blob "b$s" \
            -i "$KT_TMP/$r-$s.txt" -o "$KT_TMP/$r-$s.kt" ||
            kt_fail "encrypt $r-$s"
    done
done
[ "$(sql "SELECT parent_id FROM tier_keys WHERE name = 'eu-site-1'")" = \
    "$tik_eu" ] || kt_fail "eu-site-1 is not under the eu TIK"
out=$(kt --json status --tenant acme --site us-site-1)
[ "$(jf .region <<<"$out")" = us ] || kt_fail "status us: $out"
[ "$(jf .dep_id <<<"$out")" = "$dep_us" ] || kt_fail "status us: $out"

check_all()
{
    local r s
    for r in eu us; do
        for s in 1 2; do
            kt decrypt --tenant acme --site "$r-site-$s" --blob "b$s" \
                -i "$KT_TMP/$r-$s.kt" -o "$KT_TMP/$r-$s.out" ||
                kt_fail "decrypt $r-$s ($1)"
            cmp -s "$KT_TMP/$r-$s.txt" "$KT_TMP/$r-$s.out" ||
                kt_fail "$r-$s differs ($1)"
        done
    done
}
check_all "before the roll"

kt_log "roll eu's key A: the DEP key rewrapped, the TIK stays under it"
key_a_eu2=$(kt token keygen --module "$SOFTHSM2_MODULE" \
    --token cust-a-eu --label a-eu-v2 --type aes256 --pin-env PIN) ||
    kt_fail "keygen a-eu-v2"
kt dep roll --tenant acme --key a --new-key "$key_a_eu2" "$dep_eu" \
    >/dev/null || kt_fail "roll"
kt token destroy-key --module "$SOFTHSM2_MODULE" --token cust-a-eu \
    --label a-eu --pin-env PIN >/dev/null || kt_fail "destroy a-eu"
check_all "after the roll"

kt_log "offboard eu: an approval is required"
expect_rc 10 kt offboard --tenant acme --region eu
grep -q KEYTIER_E_APPROVAL_REQUIRED <<<"$KT_LAST_OUTPUT" ||
    kt_fail "offboard without approval: $KT_LAST_OUTPUT"
[ "$(sql "SELECT count(*) FROM offboards")" = 0 ] ||
    kt_fail "an offboarding started without an approval"
approval=$(approve files-offboard acme "$dep_eu")
out=$(kt --json offboard --tenant acme --region eu --approval "$approval") ||
    kt_fail "offboard: $out"
[ "$(jf .dep_id <<<"$out")" = "$dep_eu" ] || kt_fail "offboard: $out"
[ "$(jf .keys <<<"$out")" = service-managed ] || kt_fail "offboard: $out"
grep -q "keytier-managed-$dep_eu" <<<"$(jf .managed_key <<<"$out")" ||
    kt_fail "managed key: $out"

kt_log "eu's customer keys destroyed: every blob still opens"
kt token destroy-key --module "$SOFTHSM2_MODULE" --token cust-a-eu \
    --label a-eu-v2 --pin-env PIN >/dev/null || kt_fail "destroy a-eu-v2"
kt token destroy-key --token vault-b --label b-eu --pin-env PIN >/dev/null ||
    kt_fail "destroy b-eu"
check_all "after offboarding, eu's customer keys destroyed"
kt site create --tenant acme --region eu eu-site-3 >/dev/null ||
    kt_fail "new site in the offboarded region"
printf 'after offboarding\n' >"$KT_TMP/eu-3.txt"
kt encrypt --tenant acme --site eu-site-3 --blob b3 -i "$KT_TMP/eu-3.txt" \
    -o "$KT_TMP/eu-3.kt" || kt_fail "encrypt eu-3"
kt decrypt --tenant acme --site eu-site-3 --blob b3 -i "$KT_TMP/eu-3.kt" \
    -o "$KT_TMP/eu-3.out" || kt_fail "decrypt eu-3"
cmp -s "$KT_TMP/eu-3.txt" "$KT_TMP/eu-3.out" || kt_fail "eu-3 differs"
expect_rc 12 kt site create --tenant acme --dep "$dep_eu" eu-site-4
grep -q KEYTIER_E_OFFBOARDED <<<"$KT_LAST_OUTPUT" ||
    kt_fail "the offboarded DEP key: $KT_LAST_OUTPUT"

kt_log "status: service-managed in eu, customer keys in us"
out=$(kt --json status --tenant acme --site eu-site-1)
[ "$(jf .keys <<<"$out")" = service-managed ] || kt_fail "status eu: $out"
[ "$(jf .dep_state <<<"$out")" = offboarded ] || kt_fail "status eu: $out"
[ "$(jf .region <<<"$out")" = eu ] || kt_fail "status eu: $out"
out=$(kt --json status --tenant acme --site us-site-2)
[ "$(jf .keys <<<"$out")" = customer ] || kt_fail "status us: $out"
out=$(kt status --tenant acme)
grep -q "$dep_eu (policy .*) SharePoint region eu: offboarded, service-managed keys" \
    <<<"$out" || kt_fail "status acme: $out"
grep -q "$dep_us (policy .*) SharePoint region us: registered, customer keys" \
    <<<"$out" || kt_fail "status acme: $out"
out=$(kt --json status --tenant acme)
[ "$(jq -r ".deps[] | select(.dep_id == \"$dep_eu\") | .keys" <<<"$out")" = \
    service-managed ] || kt_fail "status --json: $out"

kt_log "the trail: offboarding started, each step, completed"
log=$(kt --json audit list)
for a in "Offboard started" "Offboard step" "Offboard completed"; do
    grep -q "\"$a\"" <<<"$log" || kt_fail "no '$a' record"
done
kt audit verify >/dev/null || kt_fail "audit verify"
kt_log "ok"
