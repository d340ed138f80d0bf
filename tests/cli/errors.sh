#!/usr/bin/env bash
# Every error is named: each error path the CLI drives (files missing or
# unreadable, output unwritable, blob not found, same token, DEP limit,
# already exists, PIN file missing, store unreachable, usage) exits with its documented code,
# its stderr line ends with [KEYTIER_E_NAME], and with --json the error
# document carries the same name and exit code (never a bare "error").
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup
cli_tokens
echo "dep_limit = 1" >>"$KEYTIER_LIB_CONF"
w=$KT_TMP
head -c 1000 /dev/urandom >"$w/pt"

# named CODE NAME ARGS...: `keytier ARGS` exits CODE with its last stderr
# line `keytier ...: ... [NAME]`; `keytier --json ARGS` exits CODE with an
# error document {name: NAME, exit: CODE} as its last stdout line.
named()
{
    local code=$1 name=$2 rc=0 line doc
    shift 2
    kt "$@" >"$w/out" 2>"$w/err" || rc=$?
    assert_eq "$code" "$rc" "exit of keytier $*"
    line=$(tail -n 1 "$w/err")
    [[ $line == "keytier"*": "*" [$name]" ]] ||
        kt_fail "keytier $*: last stderr line is not named [$name]: $line"
    rc=0
    kt --json "$@" >"$w/out" 2>"$w/err" || rc=$?
    assert_eq "$code" "$rc" "exit of keytier --json $*"
    doc=$(tail -n 1 "$w/out")
    assert_eq "$name" "$(jf .error.name <<<"$doc")" "--json name of keytier $*"
    assert_eq "$code" "$(jf .error.exit <<<"$doc")" "--json exit of keytier $*"
    line=$(tail -n 1 "$w/err")
    [[ $line == *" [$name]" ]] || kt_fail "keytier --json $*: stderr: $line"
}

kt_log "conflicts exit 12: same token, already exists"
named 12 KEYTIER_E_SAME_TOKEN dep create --tenant acme --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_A"
expect_ok kt --json dep create --tenant acme --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_B"
dep=$(jf .dep_id <<<"$KT_LAST_OUTPUT")
expect_ok kt mailbox create --tenant acme --dep "$dep" alice
named 12 KEYTIER_E_EXISTS mailbox create --tenant acme --dep "$dep" alice
named 12 KEYTIER_E_EXISTS token init --label vault-a --so-pin-env SO_PIN \
    --pin-env PIN

kt_log "limits exit 13: the tenant's DEP limit (dep_limit = 1)"
named 13 KEYTIER_E_DEP_LIMIT dep create --tenant acme --workload Exchange \
    --key-a "$URI_A" --key-b "$URI_B"

kt_log "not found exits 6: a blob, a migration, a DEP"
expect_ok kt --json dep create --tenant acme --workload SharePoint \
    --key-a "$URI_A" --key-b "$URI_B"
sdep=$(jf .dep_id <<<"$KT_LAST_OUTPUT")
expect_ok kt site create --tenant acme --dep "$sdep" finance
expect_ok kt encrypt --tenant acme --site finance --blob q3 -i "$w/pt" -o "$w/blob"
named 6 KEYTIER_E_NOT_FOUND decrypt --tenant acme --site finance --blob q4 \
    -i "$w/blob" -o "$w/x"
named 6 KEYTIER_E_NOT_FOUND migrate --tenant acme --status \
    00000000-0000-4000-8000-000000000000
named 6 KEYTIER_E_DEP_NOT_FOUND dep show --tenant acme \
    00000000-0000-4000-8000-000000000000

kt_log "files exit 7: missing, unreadable (a directory), unwritable"
named 7 KEYTIER_E_IO encrypt --tenant acme --mailbox alice -i "$w/nofile" -o "$w/x"
named 7 KEYTIER_E_IO encrypt --tenant acme --mailbox alice -i "$w" -o "$w/x"
named 7 KEYTIER_E_IO encrypt --tenant acme --mailbox alice -i "$w/pt" \
    -o "$w/nodir/x"
named 7 KEYTIER_E_IO audit list --log "$w/none.jsonl"
named 7 KEYTIER_E_IO token keygen --token vault-a --label k --type aes256 \
    --pin-file "$w/no-pin"
named 7 KEYTIER_E_IO approval fingerprint --pubkey "$w/none.der"
expect_ok kt secret create --keyset k1 --root "$URI_A"
named 7 KEYTIER_E_IO secret protect --keyset k1 -i "$w/nofile" -o "$w/x"
named 7 KEYTIER_E_IO secret protect --keyset k1 -i "$w" -o "$w/x"
named 7 KEYTIER_E_IO secret protect --keyset k1 -i "$w/pt" -o "$w/nodir/x"
[ ! -e "$w/x" ] || kt_fail "an output file was left by a failed command"

kt_log "store unreachable exits 15: a PostgreSQL store with no server"
# A socket directory where no server listens: the connection is refused,
# as when the server is down; the message names the store and the cause.
mkdir "$w/nopg"
grep -v '^store\b\|^avail.audit_log\b' "$KEYTIER_LIB_CONF" >"$w/down.conf"
printf 'store = host=%s dbname=kt\navail.audit_log = %s\n' "$w/nopg" \
    "$w/down.audit.jsonl" >>"$w/down.conf"
named 15 KEYTIER_E_STORE_UNAVAILABLE --config "$w/down.conf" dep list \
    --tenant acme
grep -q "cannot connect to the PostgreSQL store" "$w/err" ||
    kt_fail "store unreachable: $(cat "$w/err")"
named 15 KEYTIER_E_STORE_UNAVAILABLE --config "$w/down.conf" decrypt \
    --tenant acme --mailbox alice -i "$w/pt" -o "$w/x"
[ ! -e "$w/x" ] || kt_fail "an output file was left with the store down"

kt_log "usage errors exit 2, named KEYTIER_E_ARGS"
named 2 KEYTIER_E_ARGS dep show --tenant acme
named 2 KEYTIER_E_ARGS secret rollover --due --keyset k1
named 2 KEYTIER_E_ARGS secret rollover --keyset k1 --dry-run
named 2 KEYTIER_E_ARGS frobnicate
named 2 KEYTIER_E_ARGS dep frob

kt_log "PIN files: a first line longer than a PIN or holding a NUL is refused, not cut"
(umask 077 && head -c 300 /dev/zero | tr '\0' 7 >"$w/long.pin" &&
    { printf '12\000' && printf '34\n'; } >"$w/nul.pin")
named 2 KEYTIER_E_ARGS token keygen --token vault-a --label k --type aes256 \
    --pin-file "$w/long.pin"
grep -q "longer than a PIN" "$w/err" || kt_fail "long PIN file: $(cat "$w/err")"
named 2 KEYTIER_E_ARGS token keygen --token vault-a --label k --type aes256 \
    --pin-file "$w/nul.pin"
grep -q "holds no PIN" "$w/err" || kt_fail "NUL in PIN file: $(cat "$w/err")"

kt_log "ok"
