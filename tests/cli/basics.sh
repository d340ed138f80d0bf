#!/usr/bin/env bash
# The command table: --help on every command, the documented exit codes,
# help topics, usage errors and the --json error document.
. "$KT_SOURCE_ROOT/tests/common.sh"
. "$KT_SOURCE_ROOT/tests/cli/cli_env.sh"
cli_setup

kt_log "keytier --help lists every command and the exit codes"
expect_ok kt --help
top=$KT_LAST_OUTPUT
for code in "0  success" "1  failure" "2  bad command line" \
    "3  data refused" "4  access revoked" "5  keys unavailable" \
    "6  not found" "7  a file could not be read or written" \
    "8  audit log altered" "10 no live approval" \
    "11 audit log empty: nothing verified" \
    "12 conflict with the current state" "13 limit reached" \
    "14 tenant purged: its keys were destroyed"; do
    assert_contains "$top" "  $code"
done
cmds=$(awk '/^Commands:/ {on = 1; next} /^$/ {on = 0} on {print $1 " " $2}' <<<"$top")
n=0
while read -r fam verb; do
    case $verb in
    init | list | keygen | destroy-key | create | show | verify) args=("$fam" "$verb") ;;
    roll | protect | unprotect | rollover) args=("$fam" "$verb") ;; # lifecycle
    request | grant | revoke | register | keygen | fingerprint) args=("$fam" "$verb") ;;
    *) args=("$fam") ;;
    esac
    expect_ok kt "${args[@]}" --help
    assert_contains "$KT_LAST_OUTPUT" "usage: keytier ${args[*]}" "help of ${args[*]}"
    expect_ok kt --json "${args[@]}" -h
    assert_contains "$KT_LAST_OUTPUT" "usage: keytier ${args[*]}"
    n=$((n + 1))
done <<<"$cmds"
# token init/list/keygen/destroy-key, dep create/list/show, mailbox create,
# site create, status, encrypt, decrypt, audit list/verify, demo, help
# lifecycle: dep roll, assign, migrate, recover, purge, secret create/
# protect/unprotect/rollover/show; approval request/grant/list/revoke/
# register/keygen/fingerprint; files: offboard; worker; ops: health, stats
assert_eq 37 "$n" "commands in keytier --help"
for c in "token init" "token list" "token keygen" "dep create" "dep list" \
    "dep show" "mailbox create" "site create" "status" "encrypt" \
    "decrypt" "audit list" "audit verify" "demo" "help"; do
    assert_contains "$top" "  $c " "command $c"
done

kt_log "keytier --version: meson.build's version, of the command and the library"
version=$(sed -n "s/^  version : '\(.*\)',$/\1/p" "$KT_SOURCE_ROOT/meson.build")
[ -n "$version" ] || kt_fail "no version in meson.build"
expect_ok kt --version
assert_eq "keytier $version (libkeytier $version)" "$KT_LAST_OUTPUT" "keytier --version"

kt_log "help topics"
expect_ok kt help configuration
assert_contains "$KT_LAST_OUTPUT" "pin.LABEL = SRC"
assert_contains "$KT_LAST_OUTPUT" "commented examples: keytier-lib.conf.example"
assert_contains "$KT_LAST_OUTPUT" "/usr/share/doc/keytier/examples/ when installed"
assert_contains "$KT_LAST_OUTPUT" "else /etc/keytier/keytier-lib.conf if it exists"
assert_contains "$KT_LAST_OUTPUT" "log_target = syslog"
assert_contains "$KT_LAST_OUTPUT" "avail.cache_refresh_ahead_ms (default ttl/5; at most ttl/2"
expect_ok kt help fallback
assert_contains "$KT_LAST_OUTPUT" "    - system (token absent, device error"
assert_contains "$KT_LAST_OUTPUT" "    - denied (key destroyed, CKA_UNWRAP off"
expect_ok kt help envelope
assert_contains "$KT_LAST_OUTPUT" "before any"
expect_fail "keytier help: no help topic 'nope' (see 'keytier help --help') [KEYTIER_E_ARGS]" kt help nope
expect_rc 2 kt help nope

kt_log "usage errors"
expect_rc 2 kt
assert_contains "$KT_LAST_OUTPUT" "usage: keytier [--config FILE] [--json] COMMAND"
expect_fail "keytier: unknown command 'frobnicate' (see keytier --help) [KEYTIER_E_ARGS]" kt frobnicate
expect_rc 2 kt frobnicate
expect_fail "keytier: unknown option --nope (see keytier --help) [KEYTIER_E_ARGS]" kt --nope token list
expect_rc 2 kt token
assert_contains "$KT_LAST_OUTPUT" "usage: keytier token COMMAND"
assert_contains "$KT_LAST_OUTPUT" "  keytier token keygen "
assert_contains "$KT_LAST_OUTPUT" "keytier token: a command is needed (see 'keytier token --help') [KEYTIER_E_ARGS]"
expect_fail "keytier dep: unknown command 'frob' (see 'keytier dep --help') [KEYTIER_E_ARGS]" kt dep frob
expect_rc 2 kt dep frob

kt_log "help goes to stdout with exit 0; usage errors to stderr with exit 2"
# out_err CMD...: stdout into OUT, stderr into ERR, exit code into RC.
out_err()
{
    RC=0
    OUT=$(kt "$@" 2>"$KT_TMP/stderr") || RC=$?
    ERR=$(cat "$KT_TMP/stderr")
}
for args in "--help" "-h" "dep --help" "dep -h" "token --help" \
    "secret --help" "dep create --help" "secret rollover --help" \
    "help configuration" "help fallback" "help envelope" "help --help"; do
    # shellcheck disable=SC2086 # the words are the command line
    out_err $args
    assert_eq 0 "$RC" "keytier $args: exit"
    assert_eq "" "$ERR" "keytier $args: nothing on stderr"
    [ -n "$OUT" ] || kt_fail "keytier $args: no help on stdout"
done
out_err dep --help
assert_contains "$OUT" "usage: keytier dep COMMAND"
assert_contains "$OUT" "  keytier dep create "
assert_contains "$OUT" "  keytier dep roll "
out_err help fallback
assert_contains "$OUT" "keytier help fallback"
out_err
assert_eq 2 "$RC" "keytier: exit"
assert_eq "" "$OUT" "keytier: nothing on stdout"
assert_contains "$ERR" "usage: keytier [--config FILE]"
for args in "frobnicate" "dep" "dep frob" "--nope" "help" "help nope" \
    "dep create --bogus"; do
    # shellcheck disable=SC2086
    out_err $args
    assert_eq 2 "$RC" "keytier $args: exit"
    assert_eq "" "$OUT" "keytier $args: nothing on stdout"
    assert_contains "$ERR" "[KEYTIER_E_ARGS]" "keytier $args: named"
done
expect_fail "keytier token list: unexpected argument 'extra' (see 'keytier token list --help') [KEYTIER_E_ARGS]" \
    kt token list extra

kt_log "--json errors: one document on stdout, the line on stderr"
rc=0
out=$(kt --json dep show --tenant t 00000000-0000-4000-8000-000000000000 \
    --config "$KT_TMP/none" 2>"$KT_TMP/err") || rc=$?
assert_eq 2 "$rc"
assert_eq KEYTIER_E_ARGS "$(jf .error.name <<<"$out")"
assert_eq "dep show" "$(jf .error.command <<<"$out")"
assert_eq 2 "$(jf .error.exit <<<"$out")"
cat >"$KT_TMP/lib.conf" <<CONF
store = $KT_TMP/store.db
CONF
rc=0
out=$(kt --config "$KT_TMP/lib.conf" --json dep show --tenant t \
    00000000-0000-4000-8000-000000000000 2>"$KT_TMP/err") || rc=$?
assert_eq 6 "$rc"
assert_eq KEYTIER_E_DEP_NOT_FOUND "$(jf .error.name <<<"$out")"
assert_eq "DEP not found: 00000000-0000-4000-8000-000000000000" "$(jf .error.message <<<"$out")"
assert_eq 6 "$(jf .error.exit <<<"$out")"
assert_eq "keytier dep show: DEP not found: 00000000-0000-4000-8000-000000000000 [KEYTIER_E_DEP_NOT_FOUND]" \
    "$(cat "$KT_TMP/err")"
kt_log "--config with an unknown key names file, line and key"
printf 'store = %s/s.db\nbogus = 1\n' "$KT_TMP" >"$KT_TMP/bad.conf"
expect_rc 1 kt --config "$KT_TMP/bad.conf" dep list --tenant t
assert_contains "$KT_LAST_OUTPUT" "$KT_TMP/bad.conf:2"
assert_contains "$KT_LAST_OUTPUT" "bogus"
assert_contains "$KT_LAST_OUTPUT" "[KEYTIER_E_CONFIG]"
kt_log "ok"
kt_log "hsm-config/keytier-cli.conf.example is accepted (paths moved here)"
sed -e "s|/var/lib/keytier|$KT_TMP/ex|; s|/var/log/keytier|$KT_TMP/ex|" \
    -e '/^remote = /d; /^module = /d' \
    "$KT_SOURCE_ROOT/hsm-config/keytier-cli.conf.example" >"$KT_TMP/example.conf"
mkdir -p "$KT_TMP/ex"
expect_ok kt --config "$KT_TMP/example.conf" dep list --tenant t
expect_ok kt --config "$KT_TMP/example.conf" audit list
assert_eq "0 of 0 records shown ($KT_TMP/ex/audit.jsonl)" "$KT_LAST_OUTPUT"
kt_log "ok (example)"
