#!/usr/bin/env bash
# keytier secret rollover --due [--dry-run]: scheduled rollover of every
# keyset without a protect call, on keytier's module: text and JSON
# summaries, a dry run that changes nothing, two processes at once rolling
# each due key exactly once, retirement by age (KEYTIER_E_RETIRED after),
# a keyset that fails, and the systemd units in hsm-config/ whose command
# is run as the timer would run it.  Keys are aged by moving their times
# back in the store (ages are data, not waiting).
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
w=$KT_TMP

# version KEYSET: its current version.
version() { kt --json secret show --keyset "$1" | jf .current_version; }
# audit_count ACTIVITY: audit records of that activity.
audit_count()
{
    kt --json audit list | jq -c "select(.Activity == \"$1\")" | wc -l
}
# age_current SECONDS KEYSET...: the current keys made SECONDS earlier.
age_current()
{
    local secs=$1 k
    shift
    for k in "$@"; do
        kt_sql "$KEYTIER_LIB_CONF" "UPDATE keyset_keys SET created = created - $secs
            WHERE name = '$k' AND state = 0" || kt_fail "aging $k"
    done
}

kt_log "keysets: roll over after an hour; conn's archived keys retire 2 h after; one never due"
expect_ok kt secret create --keyset conn --root "$URI_A" --rollover-after 3600 \
    --retire-after 7200
for k in p1 p2 p3 p4; do
    expect_ok kt secret create --keyset "$k" --root "$URI_B" \
        --rollover-after 3600 --retire-after 0
done
expect_ok kt secret create --keyset never --root "$URI_A" --rollover-after 0 \
    --retire-after 0
printf 'account-password' >"$w/secret"
expect_ok kt secret protect --keyset conn --context acct -i "$w/secret" \
    -o "$w/s1"

kt_log "nothing due yet: exit 0, nothing rolled"
expect_ok kt --json secret rollover --due
assert_eq 6 "$(jf .keysets <<<"$KT_LAST_OUTPUT")"
assert_eq 0 "$(jf .rolled <<<"$KT_LAST_OUTPUT")"
assert_eq false "$(jf .dry_run <<<"$KT_LAST_OUTPUT")"
age_current 3600 conn p1 p2 p3 p4 never

kt_log "--dry-run: five due, nothing changes"
expect_ok kt --json secret rollover --due --dry-run
assert_eq 5 "$(jf .rolled <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf .dry_run <<<"$KT_LAST_OUTPUT")"
assert_eq true "$(jf '.items[] | select(.keyset == "conn") | .rolled' <<<"$KT_LAST_OUTPUT")"
assert_eq false "$(jf '.items[] | select(.keyset == "never") | .rolled' <<<"$KT_LAST_OUTPUT")"
expect_ok kt secret rollover --due --dry-run
assert_contains "$KT_LAST_OUTPUT" "keyset conn: version 1 current, rollover due; 0 archived versions due to retire"
assert_contains "$KT_LAST_OUTPUT" "dry run, nothing changed: 6 keysets: 5 due to roll over, 0 archived versions due to retire"
for k in conn p1 p2 p3 p4 never; do
    assert_eq 1 "$(version "$k")" "version of $k after the dry run"
done
assert_eq 0 "$(audit_count "Keyset rollover")" "rollovers after the dry run"

kt_log "two processes at once: each due key is rolled over exactly once"
rc1=0 rc2=0
kt --json secret rollover --due >"$w/r1" 2>"$w/e1" &
pid1=$!
kt --json secret rollover --due >"$w/r2" 2>"$w/e2" &
pid2=$!
wait "$pid1" || rc1=$?
wait "$pid2" || rc2=$?
assert_eq 0 "$rc1" "first process: $(cat "$w/e1")"
assert_eq 0 "$rc2" "second process: $(cat "$w/e2")"
assert_eq 5 "$(($(jf .rolled <"$w/r1") + $(jf .rolled <"$w/r2")))" \
    "rollovers by both processes"
for k in conn p1 p2 p3 p4; do
    assert_eq 2 "$(version "$k")" "version of $k"
done
assert_eq 1 "$(version never)"
assert_eq 5 "$(audit_count "Keyset rollover")" "rollover audit records"

kt_log "the secret under the archived key still opens"
expect_ok kt secret unprotect --keyset conn --context acct -i "$w/s1" -o "$w/back"
assert_files_eq "$w/secret" "$w/back"

kt_log "2 h after archiving, version 1 retires: text summary, audit, RETIRED"
kt_sql "$KEYTIER_LIB_CONF" "UPDATE keyset_keys SET archived = archived - 7140
    WHERE name = 'conn' AND version = 1" || kt_fail "aging version 1"
expect_ok kt --json secret rollover --due
assert_eq 0 "$(jf .retired <<<"$KT_LAST_OUTPUT")" "retired a minute early"
kt_sql "$KEYTIER_LIB_CONF" "UPDATE keyset_keys SET archived = archived - 60
    WHERE name = 'conn' AND version = 1" || kt_fail "aging version 1"
expect_ok kt secret rollover --due --dry-run
assert_contains "$KT_LAST_OUTPUT" "keyset conn: version 2 current; 1 archived version due to retire"
assert_eq 0 "$(audit_count "Keyset key retired")" "retired by the dry run"
[ "$(kt_sql "$KEYTIER_LIB_CONF" "SELECT length(wrapped) FROM keyset_keys
    WHERE name = 'conn' AND version = 1")" -gt 0 ] ||
    kt_fail "the dry run erased version 1"
expect_ok kt secret rollover --due
assert_contains "$KT_LAST_OUTPUT" "keyset conn: version 2 current; 1 archived version retired"
assert_contains "$KT_LAST_OUTPUT" "6 keysets: 0 rolled over, 1 archived version retired"
assert_eq 1 "$(audit_count "Keyset key retired")"
expect_rc 1 kt secret unprotect --keyset conn --context acct -i "$w/s1" -o "$w/back2"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_RETIRED]"
[ ! -e "$w/back2" ] || kt_fail "output of a retired secret"
expect_ok kt secret rollover --due
assert_contains "$KT_LAST_OUTPUT" "6 keysets: 0 rolled over, 0 archived versions retired"

kt_log "hsm-config/keytier-rollover.service: its command works as the timer runs it"
unit=$KT_SOURCE_ROOT/hsm-config/keytier-rollover.service
exec_line=$(sed -n 's/^ExecStart=//p' "$unit")
[ "${exec_line%% *}" = /usr/local/bin/keytier ] ||
    kt_fail "ExecStart does not run the installed keytier: $exec_line"
grep -qx 'Environment=KEYTIER_LIB_CONF=/etc/keytier/keytier-lib.conf' "$unit" ||
    kt_fail "the unit names no library configuration"
read -r -a words <<<"${exec_line#* }"
v=$(version conn)
age_current 3600 conn
expect_ok env KEYTIER_LIB_CONF="$KEYTIER_LIB_CONF" "$KT_CLI" "${words[@]}"
assert_contains "$KT_LAST_OUTPUT" "keyset conn: version $((v + 1)) current (rolled over)"
if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/local/bin/keytier|$KT_CLI|; /^User=/d; /^Group=/d" "$unit" \
        >"$w/keytier-rollover.service"
    cp "$KT_SOURCE_ROOT/hsm-config/keytier-rollover.timer" "$w/"
    systemd-analyze verify --man=no "$w/keytier-rollover.timer" \
        "$w/keytier-rollover.service" ||
        kt_fail "systemd-analyze verify refused the units"
else
    kt_log "systemd-analyze not installed: unit syntax not verified"
fi
kt_log "a keyset that fails: exit code and name of its error, the others roll"
kt token destroy-key --token vault-b --label root-b --pin-env PIN >/dev/null ||
    kt_fail "destroy root-b"
v=$(version conn)
age_current 3600 conn p1 p2 p3 p4
expect_rc 6 kt secret rollover --due
assert_contains "$KT_LAST_OUTPUT" "keyset p1: failed: root key not found: "
assert_contains "$KT_LAST_OUTPUT" "keytier secret rollover: root key not found: keyset p1: keyset root "
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_KEY_NOT_FOUND]"
assert_eq $((v + 1)) "$(version conn)" "conn rolled although p1..p4 failed"

kt_log "ok"
