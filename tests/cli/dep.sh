#!/usr/bin/env bash
# keytier dep create | list | show, mailbox create, site create, status:
# output, JSON fields, exit codes and the errors (bad URI, same token
# twice, missing key, PIN in a URI, unknown workload, bad DEP name, wrong
# tenant, unknown DEP, duplicate mailbox, wrong shape).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
# A files-shaped workload whose availability key is AES (SharePoint's is
# RSA-2048).
echo "workload.Files.shape = files" >>"$KEYTIER_LIB_CONF"

kt_log "dep create errors"
expect_fail "keytier dep create: customer keys are in the same token: customer keys $URI_A and $URI_A are both in token 'vault-a' [KEYTIER_E_SAME_TOKEN]" \
    kt dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_A"
expect_rc 12 kt dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_A"
expect_fail "keytier dep create: root key not found: customer key A pkcs11:token=vault-a;object=nope: no such key in token 'vault-a' [KEYTIER_E_KEY_NOT_FOUND]" \
    kt dep create --tenant acme --workload Exchange --key-a "pkcs11:token=vault-a;object=nope" --key-b "$URI_B"
expect_rc 6 kt dep create --tenant acme --workload Exchange --key-a "pkcs11:token=vault-a;object=nope" --key-b "$URI_B"
expect_fail "keytier dep create: malformed PKCS#11 URI: customer key A notauri (notauri: URI scheme must be 'pkcs11:') [KEYTIER_E_URI]" \
    kt dep create --tenant acme --workload Exchange --key-a notauri --key-b "$URI_B"
expect_fail "keytier dep create: malformed PKCS#11 URI: customer key A: PINs are configured per token (pin.LABEL), not in URIs: pin-value/pin-source refused [KEYTIER_E_URI]" \
    kt dep create --tenant acme --workload Exchange --key-a "pkcs11:token=vault-a;object=root-a;pin-value=$PIN" --key-b "$URI_B"
assert_not_contains "$KT_LAST_OUTPUT" "$PIN" "PIN in a URI echoed"
expect_fail "keytier dep create: no configured token matches: customer key B pkcs11:token=vault-z;object=root-b (pkcs11:token=vault-z;object=root-b) [KEYTIER_E_TOKEN_NOT_FOUND]" \
    kt dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "pkcs11:token=vault-z;object=root-b"
expect_fail "keytier dep create: invalid configuration: unknown workload 'Nope' [KEYTIER_E_CONFIG]" \
    kt dep create --tenant acme --workload Nope --key-a "$URI_A" --key-b "$URI_B"
expect_fail "keytier dep create: --tenant, --workload, --key-a and --key-b are required (see 'keytier dep create --help') [KEYTIER_E_ARGS]" \
    kt dep create --tenant acme --key-a "$URI_A"
expect_rc 2 kt dep create --tenant acme --key-a "$URI_A"
kt_log "a wrong PIN in the configuration names the token and CKR code"
sed 's/^pin.vault-b = env:PIN$/pin.vault-b = value:0000-wrong/' "$KEYTIER_LIB_CONF" >"$KT_TMP/wrong-pin.conf"
chmod 600 "$KT_TMP/wrong-pin.conf" # it holds a PIN
expect_rc 1 kt --config "$KT_TMP/wrong-pin.conf" dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B"
assert_contains "$KT_LAST_OUTPUT" "keytier dep create: token login failed: token 'vault-b': C_Login: CKR_PIN_INCORRECT (The password or PIN is incorrect) [KEYTIER_E_LOGIN]"
assert_not_contains "$KT_LAST_OUTPUT" "0000-wrong" "PIN in the error"
expect_fail "keytier dep list: invalid configuration: config $KT_TMP/none.conf: cannot open: No such file or directory [KEYTIER_E_CONFIG]" \
    kt --config "$KT_TMP/none.conf" dep list --tenant acme

kt_log "dep create: JSON fields"
expect_ok kt --json dep create --tenant acme --workload Exchange --key-a "$URI_A" --key-b "$URI_B"
d=$KT_LAST_OUTPUT
dep=$(jf .dep_id <<<"$d")
policy=$(jf .policy_id <<<"$d")
[[ $dep =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || kt_fail "dep_id $dep"
[[ $policy =~ ^[0-9a-f-]{36}$ ]] || kt_fail "policy_id $policy"
assert_eq acme "$(jf .tenant <<<"$d")"
assert_eq Exchange "$(jf .workload <<<"$d")"
assert_eq null "$(jq -r .name <<<"$d")" "no --name: name is null"
assert_eq registered "$(jf .state <<<"$d")"
[[ $(jf .created <<<"$d") =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || kt_fail "created"
assert_eq "$URI_A" "$(jf .roots.a.uri <<<"$d")"
assert_eq "$URI_B" "$(jf .roots.b.uri <<<"$d")"
assert_eq aes-key-wrap-pad "$(jf .roots.a.wrap <<<"$d")"
assert_contains "$(jf .roots.availability.uri <<<"$d")" ";token=svc;"

kt_log "dep create: human output"
expect_ok kt dep create --tenant acme --workload Files --key-a "$URI_A" --key-b "$URI_B"
assert_contains "$KT_LAST_OUTPUT" "  workload  Files"
assert_contains "$KT_LAST_OUTPUT" "  name      (none)"
assert_contains "$KT_LAST_OUTPUT" "  key A     $URI_A (aes-key-wrap-pad)"
fdep=$(head -1 <<<"$KT_LAST_OUTPUT" | cut -d' ' -f2)

kt_log "dep create --name: the name round-trips, human and JSON"
name='Contoso mail – EU'
expect_ok kt --json dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name "$name"
gdep=$(jf .dep_id <<<"$KT_LAST_OUTPUT")
gpolicy=$(jf .policy_id <<<"$KT_LAST_OUTPUT")
assert_eq "$name" "$(jf .name <<<"$KT_LAST_OUTPUT")"
assert_eq globex "$(jf .tenant <<<"$KT_LAST_OUTPUT")"
expect_ok kt dep show --tenant globex "$gdep"
assert_contains "$KT_LAST_OUTPUT" "  name      $name"
expect_ok kt --json dep show --tenant globex "$gdep"
assert_eq "$name" "$(jf .name <<<"$KT_LAST_OUTPUT")"
name64=$(printf 'n%.0s' {1..64})
expect_ok kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name "$name64"
assert_contains "$KT_LAST_OUTPUT" "  name      $name64"

kt_log "dep create --name: bad names are refused and nothing is stored"
expect_fail "keytier dep create: invalid argument: DEP name contains control character U+000A (at byte 6) [KEYTIER_E_ARGS]" \
    kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name $'line1\nline2'
expect_rc 2 kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name $'esc\e[31m'
expect_fail "keytier dep create: invalid argument: DEP name contains control character U+001B (at byte 4) [KEYTIER_E_ARGS]" \
    kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name $'esc\e[31m'
expect_fail "keytier dep create: invalid argument: DEP name is 65 bytes long, at most 64 allowed [KEYTIER_E_ARGS]" \
    kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name "${name64}x"
expect_rc 2 kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name "${name64}x"
expect_fail "keytier dep create: invalid argument: DEP name is not valid UTF-8 (at byte 5) [KEYTIER_E_ARGS]" \
    kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name $'bad \xff'
expect_fail "keytier dep create: invalid argument: DEP name is empty [KEYTIER_E_ARGS]" \
    kt dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name ""
out=$(kt --json dep create --tenant globex --workload Exchange --key-a "$URI_A" --key-b "$URI_B" --name $'tab\there') &&
    kt_fail "a name with a tab was accepted"
assert_eq "invalid argument: DEP name contains control character U+0009 (at byte 4)" \
    "$(jf .error.message <<<"$out")"
assert_eq 2 "$(jf .error.exit <<<"$out")"
expect_ok kt --json dep list --tenant globex
assert_eq "$gdep" "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | head -1)"
assert_eq 2 "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | wc -l)" "refused names stored nothing"

kt_log "dep list and show"
expect_ok kt --json dep list --tenant acme
assert_eq "$dep $fdep" "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | xargs)"
expect_ok kt --json dep list --tenant acme --workload Files
assert_eq "$fdep" "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | xargs)"
expect_ok kt dep list --tenant acme
assert_contains "$KT_LAST_OUTPUT" "$dep $policy $(printf %-16s acme) Exchange"
expect_ok kt dep list --tenant nobody
assert_eq 1 "$(wc -l <<<"$KT_LAST_OUTPUT")" "header only"
kt_log "dep list without --tenant: every tenant's DEPs, oldest first"
expect_ok kt --json dep list
assert_eq "$dep $fdep $gdep" "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | head -3 | xargs)"
assert_eq "acme acme globex globex" "$(jq -r .tenant <<<"$KT_LAST_OUTPUT" | xargs)"
assert_eq "null null $name" "$(jq -r .name <<<"$KT_LAST_OUTPUT" | head -3 | paste -sd' ')"
expect_ok kt dep list
assert_eq 5 "$(wc -l <<<"$KT_LAST_OUTPUT")" "header and four DEPs"
assert_contains "$KT_LAST_OUTPUT" "$dep $policy $(printf %-16s acme) Exchange"
assert_contains "$KT_LAST_OUTPUT" "$gdep $gpolicy $(printf %-16s globex) Exchange"
assert_contains "$KT_LAST_OUTPUT" " $name"
expect_ok kt --json dep list --workload Files
assert_eq "$fdep" "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT" | xargs)"
expect_ok kt dep show --tenant acme "$dep"
assert_contains "$KT_LAST_OUTPUT" "DEP $dep"
assert_contains "$KT_LAST_OUTPUT" "  policy    $policy"
expect_ok kt dep show --json --tenant acme "$dep"
assert_eq "$policy" "$(jf .policy_id <<<"$KT_LAST_OUTPUT")"
kt_log "dep show without --tenant: the id alone finds any tenant's DEP"
expect_ok kt dep show "$gdep"
assert_contains "$KT_LAST_OUTPUT" "DEP $gdep"
assert_contains "$KT_LAST_OUTPUT" "  tenant    globex"
assert_contains "$KT_LAST_OUTPUT" "  name      $name"
expect_ok kt --json dep show "$dep"
assert_eq acme "$(jf .tenant <<<"$KT_LAST_OUTPUT")"
assert_eq "$policy" "$(jf .policy_id <<<"$KT_LAST_OUTPUT")"
expect_fail "keytier dep show: DEP not found: 00000000-0000-4000-8000-000000000000 [KEYTIER_E_DEP_NOT_FOUND]" \
    kt dep show 00000000-0000-4000-8000-000000000000
expect_fail "keytier dep show: object belongs to another tenant: DEP $dep does not belong to tenant other [KEYTIER_E_WRONG_TENANT]" \
    kt dep show --tenant other "$dep"
expect_fail "keytier dep show: object belongs to another tenant: DEP $gdep does not belong to tenant acme [KEYTIER_E_WRONG_TENANT]" \
    kt dep show --tenant acme "$gdep"
expect_rc 1 kt dep show --tenant acme "$gdep"
expect_fail "keytier dep show: DEP not found: 00000000-0000-4000-8000-000000000000 [KEYTIER_E_DEP_NOT_FOUND]" \
    kt dep show --tenant acme 00000000-0000-4000-8000-000000000000
expect_rc 6 kt dep show --tenant acme 00000000-0000-4000-8000-000000000000
expect_fail "keytier dep show: one DEP id expected (see 'keytier dep show --help') [KEYTIER_E_ARGS]" \
    kt dep show --tenant acme
expect_fail "keytier dep show: one DEP id expected (see 'keytier dep show --help') [KEYTIER_E_ARGS]" \
    kt dep show
kt_log "help texts"
expect_ok kt dep create --help
assert_contains "$KT_LAST_OUTPUT" "[--name N]"
expect_ok kt dep list --help
assert_contains "$KT_LAST_OUTPUT" "usage: keytier dep list [--tenant T] [--workload W]"
expect_ok kt dep show --help
assert_contains "$KT_LAST_OUTPUT" "usage: keytier dep show [--tenant T] ID"
expect_ok kt --help
assert_contains "$KT_LAST_OUTPUT" "list DEPs (every tenant's, or one tenant's)"

kt_log "mailbox and site create"
expect_ok kt --json mailbox create --tenant acme --dep "$dep" --request-id req-1 alice
m=$KT_LAST_OUTPUT
assert_eq mailbox "$(jf .kind <<<"$m")"
assert_eq alice "$(jf .name <<<"$m")"
assert_eq "$dep" "$(jf .dep_id <<<"$m")"
assert_eq Exchange "$(jf .workload <<<"$m")"
assert_eq req-1 "$(jf .request_id <<<"$m")"
mkey=$(jf .key_id <<<"$m")
expect_ok kt mailbox create --tenant acme --dep "$dep" bob
assert_contains "$KT_LAST_OUTPUT" "mailbox 'bob' created under DEP $dep (Exchange, key "
expect_fail "keytier mailbox create: already exists: tenant acme already has 'alice' in Exchange [KEYTIER_E_EXISTS]" \
    kt mailbox create --tenant acme --dep "$dep" alice
expect_fail "keytier mailbox create: object belongs to another tenant: DEP $dep does not belong to tenant other [KEYTIER_E_WRONG_TENANT]" \
    kt mailbox create --tenant other --dep "$dep" carol
expect_fail "keytier mailbox create: DEP not found: 00000000-0000-4000-8000-000000000000 [KEYTIER_E_DEP_NOT_FOUND]" \
    kt mailbox create --tenant acme --dep 00000000-0000-4000-8000-000000000000 carol
expect_fail "keytier site create: DEP $dep is for workload Exchange (mail shape): use 'keytier mailbox create' (see 'keytier site create --help') [KEYTIER_E_ARGS]" \
    kt site create --tenant acme --dep "$dep" finance
expect_fail "keytier mailbox create: one mailbox name expected (see 'keytier mailbox create --help') [KEYTIER_E_ARGS]" \
    kt mailbox create --tenant acme --dep "$dep"
expect_ok kt --json site create --tenant acme --dep "$fdep" finance
assert_eq site "$(jf .kind <<<"$KT_LAST_OUTPUT")"
assert_eq Files "$(jf .workload <<<"$KT_LAST_OUTPUT")"
[[ $(jf .request_id <<<"$KT_LAST_OUTPUT") =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
    kt_fail "generated request id is not a UUID v4"

kt_log "SharePoint: an RSA-2048 availability key, sites by default workload"
expect_ok kt --json dep create --tenant acme --workload SharePoint --key-a "$URI_A" --key-b "$URI_B"
spdep=$(jf .dep_id <<<"$KT_LAST_OUTPUT")
assert_eq rsa-oaep-sha256 "$(jf .roots.availability.wrap <<<"$KT_LAST_OUTPUT")"
assert_contains "$(jf .roots.availability.uri <<<"$KT_LAST_OUTPUT")" ";type=private"
expect_ok kt site create --tenant acme --dep "$spdep" hr
assert_contains "$KT_LAST_OUTPUT" "site 'hr' created under DEP $spdep (SharePoint, key "
expect_fail "keytier mailbox create: DEP $spdep is for workload SharePoint (files shape): use 'keytier site create' (see 'keytier mailbox create --help') [KEYTIER_E_ARGS]" \
    kt mailbox create --tenant acme --dep "$spdep" carol
expect_ok kt status --tenant acme --site hr
assert_contains "$KT_LAST_OUTPUT" "site 'hr' (SharePoint): encrypted under DEP $spdep"
echo "hello" | kt encrypt --tenant acme --site hr --blob memo.txt >"$KT_TMP/memo.kt" ||
    kt_fail "encrypt a SharePoint blob"
assert_eq hello "$(kt decrypt --tenant acme --site hr --blob memo.txt <"$KT_TMP/memo.kt")"

kt_log "status"
expect_ok kt --json status --tenant acme --mailbox alice
s=$KT_LAST_OUTPUT
assert_eq true "$(jf .encrypted <<<"$s")"
assert_eq "$dep" "$(jf .dep_id <<<"$s")"
assert_eq "$policy" "$(jf .policy_id <<<"$s")"
assert_eq "$mkey" "$(jf .key_id <<<"$s")"
assert_eq registered "$(jf .dep_state <<<"$s")"
assert_eq Exchange "$(jf .workload <<<"$s")"
assert_eq null "$(jq -r .dep_name <<<"$s")" "an unnamed DEP: dep_name is null"
expect_ok kt mailbox create --tenant globex --dep "$gdep" gina
expect_ok kt --json status --tenant globex --mailbox gina
assert_eq "$name" "$(jf .dep_name <<<"$KT_LAST_OUTPUT")"
assert_eq "$gdep" "$(jf .dep_id <<<"$KT_LAST_OUTPUT")"
expect_ok kt status --tenant globex --mailbox gina
assert_eq "mailbox 'gina' (Exchange): encrypted under DEP $gdep '$name' (policy $gpolicy), DEP registered" "$(head -n 1 <<<"$KT_LAST_OUTPUT")"
expect_ok kt status --tenant acme --mailbox alice
assert_eq "mailbox 'alice' (Exchange): encrypted under DEP $dep (policy $policy), DEP registered
  customer key A    reachable
  customer key B    reachable
  availability key  present" "$KT_LAST_OUTPUT"
expect_ok kt --json status --tenant acme --mailbox nobody
assert_eq false "$(jf .encrypted <<<"$KT_LAST_OUTPUT")"
assert_eq null "$(jq -r .dep_id <<<"$KT_LAST_OUTPUT")"
expect_ok kt status --tenant acme --mailbox nobody
assert_eq "mailbox 'nobody' (Exchange): not encrypted under a customer key" "$KT_LAST_OUTPUT"
expect_ok kt status --tenant acme --site finance --workload Files
assert_contains "$KT_LAST_OUTPUT" "site 'finance' (Files): encrypted under DEP $fdep"
expect_ok kt --json status --tenant acme
assert_eq "$dep $fdep $spdep" "$(jq -r '.deps[].dep_id' <<<"$KT_LAST_OUTPUT" | xargs)"
expect_ok kt status --tenant acme
assert_contains "$KT_LAST_OUTPUT" "tenant acme: 3 DEPs"
expect_fail "keytier status: --mailbox and --site exclude each other (see 'keytier status --help') [KEYTIER_E_ARGS]" \
    kt status --tenant acme --mailbox a --site b
kt_log "ok"
