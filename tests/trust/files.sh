#!/usr/bin/env bash
# Files at rest, as an attacker with a shell account on the machine would
# try them: every file the module, the library and the CLI create is 0600
# in 0700 directories whatever the umask, and a configuration or PIN file
# another user could change (or, holding a PIN, read) is refused with a
# message naming the file and the fix.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup

# private FILE...: each is exactly 0600 (a file) or 0700 (a directory)
private()
{
    local f mode
    for f in "$@"; do
        mode=$(stat -c %a "$f")
        if [ -d "$f" ]; then
            assert_eq 700 "$mode" "mode of directory $f"
        else
            assert_eq 600 "$mode" "mode of $f"
        fi
    done
}

kt_log "under umask 000 the tokens, the store, the audit log and both logs are owner-only"
umask 000
cli_tokens
chmod 644 "$KEYTIER_LIB_CONF" # written under umask 000 by the test itself
expect_ok kt dep create --tenant acme --workload Exchange --key-a "$URI_A" \
    --key-b "$URI_B"
expect_ok kt audit verify
[ -f "$KT_TMP/lib.log" ] || kt_fail "the library made no log file"
[ -f "$KT_TMP/module/keytier.log" ] || kt_fail "the module made no log file"
mapfile -t made < <(find "$KT_TMP/module/tokens" "$KT_TMP/store" \
    "$KT_TMP/lib.log" "$KT_TMP/module/keytier.log")
[ "${#made[@]}" -ge 10 ] || kt_fail "too few files to check: ${made[*]}"
private "${made[@]}"
umask 022

kt_log "a log file an older version left 0644 is made 0600 at its next open"
chmod 644 "$KT_TMP/lib.log" "$KT_TMP/module/keytier.log"
expect_ok kt dep list --tenant acme
private "$KT_TMP/lib.log" "$KT_TMP/module/keytier.log"

kt_log "a configuration others can change is refused, naming the file and the fix"
conf=$KT_TMP/other.conf
cp "$KEYTIER_LIB_CONF" "$conf"
chmod 664 "$conf"
expect_fail "keytier dep list: invalid configuration: config $conf is writable by its group (mode 0664): run chmod go-w $conf [KEYTIER_E_CONFIG]" \
    kt --config "$conf" dep list --tenant acme
expect_rc 1 kt --config "$conf" dep list --tenant acme
chmod 646 "$conf"
expect_fail "keytier dep list: invalid configuration: config $conf is writable by others (mode 0646): run chmod go-w $conf [KEYTIER_E_CONFIG]" \
    kt --config "$conf" dep list --tenant acme
chmod 644 "$conf"
expect_ok kt --config "$conf" dep list --tenant acme

kt_log "a configuration that holds a PIN must be unreadable by others"
sed 's/^pin.vault-b = env:PIN$/pin.vault-b = value:'"$PIN"'/' \
    "$KEYTIER_LIB_CONF" >"$conf"
chmod 644 "$conf"
expect_fail "keytier dep list: invalid configuration: config $conf holds the PIN of token 'vault-b' (pin.vault-b = value:...) but is readable by others (mode 0644): run chmod go-rwx $conf, or give the PIN as file:PATH or env:NAME [KEYTIER_E_CONFIG]" \
    kt --config "$conf" dep list --tenant acme
chmod 640 "$conf"
expect_fail "keytier dep list: invalid configuration: config $conf holds the PIN of token 'vault-b' (pin.vault-b = value:...) but is readable by its group (mode 0640): run chmod go-rwx $conf, or give the PIN as file:PATH or env:NAME [KEYTIER_E_CONFIG]" \
    kt --config "$conf" dep list --tenant acme
chmod 600 "$conf"
expect_ok kt --config "$conf" dep create --tenant pin-inline \
    --workload Exchange --key-a "$URI_A" --key-b "$URI_B"

if [ "$(id -u)" -eq 0 ]; then
    kt_log "a configuration owned by another user is refused"
    chown nobody "$conf"
    expect_fail "keytier dep list: invalid configuration: config $conf belongs to uid $(id -u nobody), neither this user (uid 0) nor root: another user could change it; chown it [KEYTIER_E_CONFIG]" \
        kt --config "$conf" dep list --tenant acme
    chown root "$conf"
fi

kt_log "--config must name a regular file: a directory, a pipe or a device is an error"
mkdir "$KT_TMP/confdir"
expect_fail "keytier dep list: invalid configuration: config $KT_TMP/confdir is a directory: name a regular file [KEYTIER_E_CONFIG]" \
    kt --config "$KT_TMP/confdir" dep list --tenant acme
expect_rc 1 kt --config "$KT_TMP/confdir" dep list --tenant acme
mkfifo "$KT_TMP/conf.fifo"
expect_fail "keytier dep list: invalid configuration: config $KT_TMP/conf.fifo is a pipe: name a regular file [KEYTIER_E_CONFIG]" \
    timeout 20 "$KT_CLI" --config "$KT_TMP/conf.fifo" dep list --tenant acme
expect_fail "keytier dep list: invalid configuration: config /dev/null is a device: name a regular file [KEYTIER_E_CONFIG]" \
    kt --config /dev/null dep list --tenant acme

kt_log "a PIN file others can read or change is refused, by the library and the CLI"
pinf=$KT_TMP/vault-b.pin
printf '%s\n' "$PIN" >"$pinf"
chmod 644 "$pinf"
sed 's|^pin.vault-b = env:PIN$|pin.vault-b = file:'"$pinf"'|' \
    "$KEYTIER_LIB_CONF" >"$conf"
chmod 600 "$conf"
expect_fail "keytier dep create: PIN unavailable: PIN of token 'vault-b': PIN file $pinf holds a secret but is readable by others (mode 0644): run chmod go-rwx $pinf [KEYTIER_E_PIN]" \
    kt --config "$conf" dep create --tenant pin-file --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_B"
chmod 620 "$pinf"
expect_fail "keytier dep create: PIN unavailable: PIN of token 'vault-b': PIN file $pinf is writable by its group (mode 0620): run chmod go-w $pinf [KEYTIER_E_PIN]" \
    kt --config "$conf" dep create --tenant pin-file --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_B"
chmod 600 "$pinf"
expect_ok kt --config "$conf" dep create --tenant pin-file \
    --workload Exchange --key-a "$URI_A" --key-b "$URI_B"
chmod 640 "$pinf"
expect_fail "keytier token keygen: user PIN: PIN file $pinf holds a secret but is readable by its group (mode 0640): run chmod go-rwx $pinf [KEYTIER_E_IO]" \
    kt token keygen --token vault-b --label x --type aes256 --pin-file "$pinf"
expect_rc 7 kt token keygen --token vault-b --label x --type aes256 \
    --pin-file "$pinf"

kt_log "the module refuses a configuration others can change"
chmod 664 "$KEYTIER_CONF"
expect_rc 1 kt token list
assert_contains "$KT_LAST_OUTPUT" "config $KEYTIER_CONF is writable by its group (mode 0664): run chmod go-w $KEYTIER_CONF"
chmod 644 "$KEYTIER_CONF"
expect_ok kt token list
kt_log "ok"
